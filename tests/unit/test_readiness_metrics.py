"""The metrics the alerts need are set where the events happen: Ready and stale
ExternalSecrets from the statuses the watch reports, the opt-in per-object series under its
cap, throttled reads at the cache, the restart backlog, and leadership."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from prometheus_client import REGISTRY
from tests.unit.test_cache import DB, vault

from vaultsync.cache import FetchCache
from vaultsync.errors import ThrottledError
from vaultsync.kube import ObjectRef
from vaultsync.readiness import Readiness
from vaultsync.rollout import Batches, Rotation

NOW = 1_800_000_000.0


def es(ready: str | None, since: float = NOW, interval: str = "1m") -> dict[str, Any]:
    status: dict[str, Any] = {}
    if ready is not None:
        stamp = datetime.fromtimestamp(since, UTC).isoformat().replace("+00:00", "Z")
        status["conditions"] = [{"type": "Ready", "status": ready, "lastTransitionTime": stamp}]
    return {"spec": {"refreshInterval": interval}, "status": status}


def sample(metric: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(metric, labels)


def tracker(clock: float = NOW) -> Readiness:
    readiness = Readiness(clock=lambda: clock)
    readiness.configure(per_object=False, max_series=1000, min_refresh=10.0)
    return readiness


def test_ready_counts_objects_whose_last_condition_is_true_and_forgets_deleted_ones() -> None:
    readiness = tracker()
    readiness.observe(("a", "one"), es("True"))
    readiness.observe(("a", "one"), es("True"))  # the same status again: counted once
    readiness.observe(("a", "two"), es("True"))
    readiness.observe(("a", "three"), es("False"))
    readiness.observe(("a", "new"), es(None))
    assert readiness.ready() == 2
    assert sample("vaultsync_external_secrets_ready") == 2
    readiness.observe(("a", "one"), es("False"))
    readiness.forget(("a", "two"))
    readiness.forget(("a", "two"))
    assert sample("vaultsync_external_secrets_ready") == 0
    readiness.observe(("a", "three"), es("True"))
    assert readiness.ready() == 1


def test_stale_counts_failures_by_how_many_refresh_intervals_they_have_lasted() -> None:
    readiness = tracker(clock=NOW + 200)
    readiness.observe(("a", "fresh-failure"), es("False", since=NOW + 150))  # 50 s: < 1 interval
    readiness.observe(("a", "three-minutes"), es("False", since=NOW))  # 200 s: 3 intervals
    readiness.observe(("a", "hourly"), es("False", since=NOW, interval="1h"))
    readiness.observe(("a", "once"), es("False", since=0, interval="0"))  # never refreshes
    readiness.observe(("a", "floor"), es("False", since=NOW + 185, interval="1s"))  # floor: 10 s
    readiness.observe(("a", "ok"), es("True", since=0))
    assert [readiness.stale(n) for n in (1, 3, 10)] == [2, 1, 0]


def test_the_per_object_series_exist_only_when_enabled_and_under_the_cap() -> None:
    off = tracker()
    off.observe(("ns-off", "x"), es("True"))
    assert sample("vaultsync_external_secret_ready", namespace="ns-off", name="x") is None

    on = Readiness(clock=lambda: NOW)
    on.configure(per_object=True, max_series=2, min_refresh=10.0)
    for name, ready in (("a", "True"), ("b", "False"), ("c", "True")):
        on.observe(("ns-on", name), es(ready))
    assert sample("vaultsync_external_secret_ready", namespace="ns-on", name="a") == 1
    assert sample("vaultsync_external_secret_ready", namespace="ns-on", name="b") == 0
    assert sample("vaultsync_external_secret_ready", namespace="ns-on", name="c") is None
    assert sample("vaultsync_external_secret_ready_untracked") == 1
    on.forget(("ns-on", "a"))  # frees a series for the next report of "c"
    assert sample("vaultsync_external_secret_ready", namespace="ns-on", name="a") is None
    on.observe(("ns-on", "c"), es("True"))
    assert sample("vaultsync_external_secret_ready", namespace="ns-on", name="c") == 1
    assert sample("vaultsync_external_secret_ready_untracked") == 0


def test_a_read_that_ends_throttled_is_counted_per_provider() -> None:
    before = sample("vaultsync_provider_throttled_total", provider="throttling") or 0.0

    async def scenario() -> None:
        client = vault()
        client.fail_with = ThrottledError("slow down")
        await FetchCache().get("store", "throttling", client, [DB], 60.0)

    asyncio.run(scenario())
    assert sample("vaultsync_provider_throttled_total", provider="throttling") == before + 1


def rotation(secret: str, fingerprint: str) -> Rotation:
    return Rotation(
        secret, fingerprint, ObjectRef("vaultsync.io/v1alpha1", "ExternalSecret", "a", secret, "uid")
    )


def test_the_restart_backlog_counts_rotations_waiting_in_their_window() -> None:
    batches = Batches(quiet=5, window=30)
    batches.add("a", rotation("db", "fp1"), now=0)
    batches.add("a", rotation("api", "fp2"), now=1)
    batches.add("b", rotation("db", "fp3"), now=1)
    assert batches.size() == 3
    batches.take("a")
    assert batches.size() == 1
