"""A store's call budget: spent calls delay its refreshes, throttling halves the rate, quiet
periods give it back (pure arithmetic on a clock the test moves)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.unit.test_bulkheads import body
from tests.unit.test_cache import Clock

from vaultsync import constants as c
from vaultsync.callbudget import Budgets, CallBudget
from vaultsync.constants import BUDGET_RECOVER_SECONDS, STORE_CALLS_PER_MINUTE_MAX, Reason
from vaultsync.errors import InvalidSpec
from vaultsync.models import parse_store_spec
from vaultsync.reconcile import SyncResult
from vaultsync.scheduler import Scheduler


def test_calls_beyond_the_budget_make_the_next_refresh_wait() -> None:
    clock = Clock()
    budget = CallBudget("ClusterSecretStore//aws", 60.0, clock)  # one a second, burst of 10
    for _ in range(10):
        assert budget.wait_seconds() == 0
        budget.spend()
    budget.spend()  # a batch may go beyond: the debt is repaid by waiting
    assert budget.wait_seconds() == pytest.approx(2.0)
    clock.now += 2.0
    assert budget.wait_seconds() == 0


def test_throttling_halves_the_rate_and_quiet_periods_give_it_back_to_the_limit() -> None:
    clock = Clock()
    budget = CallBudget("s", 100.0, clock)
    budget.throttled()
    assert budget.rate == 50.0
    budget.throttled()
    assert budget.rate == 25.0
    rates = []
    for _ in range(10):
        clock.now += BUDGET_RECOVER_SECONDS
        budget.wait_seconds()
        rates.append(budget.rate)
    assert rates[:3] == [35.0, 45.0, 55.0]
    assert rates[-1] == 100.0 and max(r or 0 for r in rates) == 100.0


def test_a_store_without_a_limit_gets_one_while_throttled_and_none_after() -> None:
    clock = Clock()
    budget = CallBudget("s", None, clock)
    for _ in range(120):
        budget.spend()
    assert budget.rate is None and budget.wait_seconds() == 0
    budget.throttled()
    assert budget.rate == 60.0  # half of what it made in the last minute
    assert budget.wait_seconds() == pytest.approx(1.0)  # nothing more at once
    for _ in range(100):
        clock.now += BUDGET_RECOVER_SECONDS
        budget.wait_seconds()
    assert budget.rate is None


def test_a_store_may_lower_the_operator_limit_but_never_raise_it() -> None:
    budgets = Budgets(600.0)
    assert budgets.for_store("a", None).limit == 600.0
    assert budgets.for_store("b", 60).limit == 60.0
    assert budgets.for_store("c", 100_000).limit == 600.0
    assert Budgets(None).for_store("d", None).limit is None


@pytest.mark.parametrize("value", [0, -5, STORE_CALLS_PER_MINUTE_MAX + 1, "60", 1.5, True])
def test_a_tenant_calls_per_minute_out_of_bounds_is_refused_by_name(value: object) -> None:
    with pytest.raises(InvalidSpec) as info:
        parse_store_spec({"spec": {"provider": {"fake": {}}, "callsPerMinute": value}})
    assert info.value.message.startswith("spec.callsPerMinute:")


class SpendingReconciler:
    """Each sync makes one provider call through the store's budget."""

    def __init__(self, budget: CallBudget) -> None:
        self.budget = budget
        self.synced: list[str] = []

    async def sync(self, es: Any, **_: Any) -> SyncResult:
        self.budget.spend()
        self.synced.append(es.name)
        return SyncResult(Reason.SYNCED, "ok")


def test_a_spent_budget_moves_refreshes_later_in_due_order_and_none_fails() -> None:
    async def run() -> None:
        budgets = Budgets(None)
        budget = budgets.for_store("SecretStore/shop/aws", 6.0)  # one call per 10 s, burst 1
        reconciler = SpendingReconciler(budget)
        stretched: list[tuple[str, float]] = []
        scheduler = Scheduler(
            reconciler,  # type: ignore[arg-type]
            b"k" * 32,
            workers=2,
            budgets=budgets,
            on_stretch=lambda store, wait: stretched.append((store, wait)),
        )
        for i in range(3):
            scheduler.observe(body(f"es-{i}", "aws"))
        scheduler.start()
        await asyncio.sleep(0.3)
        assert reconciler.synced == ["es-0"]  # the others wait for the budget, not failing
        assert stretched and all(store == "SecretStore/shop/aws" for store, _ in stretched)
        assert 9.0 < stretched[0][1] <= 10.0
        await scheduler.stop()

    asyncio.run(run())


def test_a_refresh_stretched_by_a_shrunk_budget_runs_soon_after_the_budget_recovers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Throttling can shrink a budget to a call a minute and leave a debt of many calls; a
    refresh moved by that wait must not stay minutes away once the budget recovers (seen in
    the chaos suite: after a burst of 429s the store's Secrets did not converge)."""
    monkeypatch.setattr(c, "BUDGET_RECOVER_SECONDS", 0.2)

    async def run() -> None:
        budgets = Budgets(None)
        budget = budgets.for_store("SecretStore/shop/aws", 6.0)  # one call per 10 s, burst 1
        reconciler = SpendingReconciler(budget)
        scheduler = Scheduler(reconciler, b"k" * 32, workers=2, budgets=budgets)  # type: ignore[arg-type]
        for i in range(2):
            scheduler.observe(body(f"es-{i}", "aws"))
        scheduler.start()
        await asyncio.sleep(0.3)
        assert reconciler.synced == ["es-0"]  # es-1 waits ~10 s for the budget
        budgets.for_store("SecretStore/shop/aws", None)  # the limit is lifted
        await asyncio.sleep(0.6)
        assert reconciler.synced == ["es-0", "es-1"]
        await scheduler.stop()

    asyncio.run(run())
