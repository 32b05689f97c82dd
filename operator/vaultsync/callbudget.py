"""Per-store budgets of provider calls: refreshes stretch to fit, throttling shrinks the rate.

AWS bills every call and Azure Key Vault throttles a vault at 4,000 operations per 10 s, so a
store can be given a number of calls per minute (`--store-calls-per-minute` for every store,
`spec.callsPerMinute` of a store to lower it further; a store never gets more than the
operator's limit). Calls are counted where they are made, one per request, by the store's
provider client (`SecretsClient.budget`). A budget never fails a call: the scheduler does not
start a refresh of a store whose budget is spent, it moves it to when the budget allows again,
in due order, so every ExternalSecret of that store is stretched alike and none fails.

A throttling answer (HTTP 429, ThrottlingException) halves the store's rate (a store without a
limit gets one: half the calls it made in the last minute); every `BUDGET_RECOVER_SECONDS` without
throttling gives back a tenth of the limit (additive increase, multiplicative decrease) until
the limit is reached again, or, for a store without one, until it has none again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from vaultsync.budget import TokenBucket
from vaultsync.constants import (
    BUDGET_DECREASE,
    BUDGET_INCREASE,
    BUDGET_MIN_PER_MINUTE,
    BUDGET_RECOVER_SECONDS,
)
from vaultsync.metrics import STORE_BUDGET, STORE_CALLS, STORE_THROTTLED


class CallBudget:
    """One store's calls per minute: `limit` as configured (None: none), `rate` as in force."""

    def __init__(self, store: str, limit: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.limit = limit
        self.rate: float | None = None
        self._clock = clock
        self._bucket: TokenBucket | None = None
        self._ceiling: float | None = None  # what recovery climbs back to
        self._changed_at = clock()
        self._window_at = clock()
        self._window_calls = 0
        self._previous_calls = 0
        self._set(limit)

    def spend(self) -> None:
        """One request made to the store's vault."""
        STORE_CALLS.labels(store=self.store).inc()
        now = self._clock()
        if now - self._window_at >= 60.0:
            self._previous_calls = self._window_calls if now - self._window_at < 120.0 else 0
            self._window_at, self._window_calls = now, 0
        self._window_calls += 1
        if self._bucket is not None:
            self._bucket.spend()

    def throttled(self) -> None:
        """The vault answered that it is throttling this store."""
        STORE_THROTTLED.labels(store=self.store).inc()
        now = self._clock()
        if self.rate is None:
            self._ceiling = None  # recovery ends with no limit again
            base = float(max(self._window_calls, self._previous_calls))
        else:
            base = self.rate
        self._set(max(BUDGET_MIN_PER_MINUTE, base * BUDGET_DECREASE))
        if self._bucket is not None:
            self._bucket.drain()  # the vault said "too many now": nothing more at once
        self._changed_at = now

    def wait_seconds(self) -> float:
        """How long a refresh of this store should wait before it may make calls (0: now)."""
        self._recover()
        return 0.0 if self._bucket is None else self._bucket.seconds_until_token()

    def _recover(self) -> None:
        now = self._clock()
        if self.rate is None or self.rate == self.limit or now - self._changed_at < BUDGET_RECOVER_SECONDS:
            return
        step = (self.limit or self._ceiling or self.rate) * BUDGET_INCREASE
        target = self.rate + max(step, BUDGET_MIN_PER_MINUTE)
        if self.limit is not None:
            self._set(min(self.limit, target))
        elif self._ceiling is None:
            # Without a limit, climb until twice the rate the throttling started from, then none.
            self._ceiling = self.rate / BUDGET_DECREASE * 2
            self._set(target)
        else:
            self._set(None if target >= self._ceiling else target)
        self._changed_at = now

    def _set(self, rate: float | None) -> None:
        self.rate = rate
        STORE_BUDGET.labels(store=self.store).set(rate if rate is not None else -1)
        if rate is None:
            self._bucket = None
            return
        burst = max(1, int(rate / 6))  # ten seconds' worth at once
        if self._bucket is None:
            self._bucket = TokenBucket(rate / 60.0, burst, self._clock)
        else:
            self._bucket.set_rate(rate / 60.0, burst)


class Budgets:
    """Every store's budget, by store (kind/namespace/name), kept across its client's renewals."""

    def __init__(self, default_limit: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self._default = default_limit
        self._clock = clock
        self._budgets: dict[str, CallBudget] = {}

    def for_store(self, store: str, own_limit: float | None) -> CallBudget:
        """The store's budget under the lower of the operator's and the store's own limit."""
        limits = [x for x in (self._default, own_limit) if x]
        limit = min(limits) if limits else None
        budget = self._budgets.get(store)
        if budget is None:
            budget = self._budgets[store] = CallBudget(store, limit, self._clock)
        elif budget.limit != limit:
            budget.limit = limit
            budget._set(limit)
        return budget

    def get(self, store: str) -> CallBudget | None:
        return self._budgets.get(store)

    def forget(self, store: str) -> None:
        self._budgets.pop(store, None)
