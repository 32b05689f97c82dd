"""A token bucket: the operator's one rate limiter, for Events and workload restarts.

Events: how many the operator may post, so scale does not flood the API server. Every
Event is an object the API server stores (for an hour by default). One per
written Secret is news when one ExternalSecret changes, and 10,000 writes when an
operator starts on a large cluster (a third of all its writes in the benchmark).
Events beyond the budget are dropped and counted; the same facts stay in status
and the logs. Restarts (vaultsync.rollout) wait for a token instead of being dropped.
The clock is passed in, so the arithmetic is tested without sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

# The operator's Event budget unless `--event-burst` / `--events-per-second` say otherwise.
EVENT_BURST = 200
EVENTS_PER_SECOND = 10.0


class TokenBucket:
    """`burst` tokens at most, refilled at `rate` per second."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._last = clock()
        self.waiting = 0  # callers inside `acquire`, waiting for a token

    def spend(self) -> None:
        """Spends one token even when there is none: the debt delays the next `take`."""
        self._refill()
        self._tokens -= 1.0

    def seconds_until_token(self) -> float:
        """How long until `take` would succeed (0 if now)."""
        self._refill()
        return 0.0 if self._tokens >= 1.0 else (1.0 - self._tokens) / self._rate

    def set_rate(self, rate: float, burst: int) -> None:
        self._refill()
        self._rate, self._burst = rate, float(burst)
        self._tokens = min(self._tokens, self._burst)

    def drain(self) -> None:
        """No token left: the next `take` waits a whole token's time."""
        self._refill()
        self._tokens = min(self._tokens, 0.0)

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now

    def take(self) -> bool:
        """Spends one token if there is one."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def wait(self) -> float:
        """Seconds until the next token (0 when one is there); call after a refused `take`."""
        return max(0.0, (1.0 - self._tokens) / self._rate)

    async def acquire(self) -> None:
        """Spends one token, waiting for it if there is none."""
        self.waiting += 1
        try:
            while not self.take():
                await asyncio.sleep(self.wait())
        finally:
            self.waiting -= 1
