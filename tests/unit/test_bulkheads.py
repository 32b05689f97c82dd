"""Bulkheads: a store that hangs delays only its own ExternalSecrets.

The scheduler runs at most `store_concurrency` syncs of one store at once, so a hanging store
cannot take every worker; the reconciler gives each sync a deadline naming the store; the
store's status check is bounded too; each store client's blocking calls run on its own threads.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import threading
import time
from typing import Any

import pytest

from vaultsync import constants as c
from vaultsync import housekeeping
from vaultsync.config import Config, add_run_arguments, from_arguments
from vaultsync.constants import Reason
from vaultsync.errors import StoreTimeout
from vaultsync.models import parse_external_secret
from vaultsync.plan import SyncResult
from vaultsync.providers.threads import StoreThreads
from vaultsync.reconcile import Reconciler
from vaultsync.scheduler import Scheduler
from vaultsync.storestatus import store_status

KEY = b"k" * 32


def body(name: str, store: str, namespace: str = "shop") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "uid": f"u-{name}", "generation": 1},
        "spec": {
            "storeRef": {"name": store},
            "refreshInterval": "1h",
            "data": [{"secretKey": "a", "remoteRef": {"key": "k"}}],
        },
    }


class StoreDependentReconciler:
    """Syncs of store "tarpit" hang until released; every other store answers at once."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.synced: dict[str, float] = {}
        self.tarpit_running = 0
        self.tarpit_peak = 0

    async def sync(self, es: Any, **_: Any) -> SyncResult:
        if es.spec.store_ref.name == "tarpit":
            self.tarpit_running += 1
            self.tarpit_peak = max(self.tarpit_peak, self.tarpit_running)
            try:
                await self.release.wait()
            finally:
                self.tarpit_running -= 1
        self.synced[es.name] = time.monotonic()
        return SyncResult(Reason.SYNCED, "ok")


def test_a_hanging_store_holds_at_most_its_share_of_workers_and_others_keep_syncing() -> None:
    reconciler = StoreDependentReconciler()

    async def run() -> float:
        scheduler = Scheduler(reconciler, b"k" * 32, workers=4, store_concurrency=2)  # type: ignore[arg-type]
        for i in range(8):  # the tarpit's ExternalSecrets come first in the queue
            scheduler.observe(body(f"slow-{i}", "tarpit"))
        for i in range(3):
            scheduler.observe(body(f"fast-{i}", "good"))
        started = time.monotonic()
        scheduler.start()
        for _ in range(200):
            await asyncio.sleep(0.01)
            if all(f"fast-{i}" in reconciler.synced for i in range(3)):
                break
        fast_done = max(reconciler.synced.get(f"fast-{i}", float("inf")) for i in range(3)) - started
        assert reconciler.tarpit_peak == 2  # the store's limit, not every worker
        reconciler.release.set()  # the tarpit's syncs end (as at their deadline)
        for _ in range(200):
            await asyncio.sleep(0.01)
            if len(reconciler.synced) == 11:
                break
        await scheduler.stop()
        return fast_done

    fast_done = asyncio.run(run())
    assert fast_done < 0.5
    assert len(reconciler.synced) == 11  # the ones waiting in the store's line ran afterwards
    assert reconciler.tarpit_peak == 2


class HangingStores:
    async def for_namespace(self, namespace: str, ref: Any, field: str = "") -> Any:
        await asyncio.sleep(3600)

    async def client_for(self, kind: str, body: Any) -> Any:
        await asyncio.sleep(3600)


class RecordingKube:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)

        return call


def test_a_sync_that_hangs_ends_at_its_deadline_naming_the_store_and_writes_no_secret() -> None:
    kube = RecordingKube()
    reconciler = Reconciler(
        kube,  # type: ignore[arg-type]
        HangingStores(),  # type: ignore[arg-type]
        cache=None,  # type: ignore[arg-type]
        hmac_key=b"k" * 32,
        renderer=None,  # type: ignore[arg-type]
        events=kube,  # type: ignore[arg-type]
        sync_timeout=0.2,
    )
    es = parse_external_secret({**body("app", "tarpit"), "status": {"dataHMAC": "h"}})
    started = time.monotonic()
    result = asyncio.run(reconciler.sync(es, max_age=0.0, next_refresh=None, force_token=None))
    assert time.monotonic() - started < 2
    assert result.reason is Reason.PROVIDER_ERROR
    assert "SecretStore shop/tarpit did not answer within 0.2 s" in result.message
    assert "--sync-timeout" in result.message
    assert [c for c in kube.calls if "secret" in c] == []  # fail static: the Secret is untouched
    assert "patch_status" in kube.calls
    assert result.status is not None and result.status["dataHMAC"] == "h"
    assert issubclass(StoreTimeout, Exception)


def test_a_store_status_check_that_hangs_ends_naming_the_store() -> None:
    store = {"metadata": {"name": "tarpit", "namespace": "shop", "generation": 1}, "spec": {}}
    started = time.monotonic()
    status = asyncio.run(store_status(HangingStores(), "SecretStore", store, timeout=0.2))  # type: ignore[arg-type]
    assert time.monotonic() - started < 2
    (condition,) = status["conditions"]
    assert condition["status"] == "False"
    assert condition["message"] == "SecretStore shop/tarpit did not answer within 0.2 s"


def test_a_store_whose_threads_are_stuck_does_not_slow_another_stores_calls() -> None:
    stuck, other = StoreThreads("stuck", size=2), StoreThreads("other", size=2)
    unblock = threading.Event()

    async def run() -> float:
        blocked = [asyncio.ensure_future(stuck.run(unblock.wait, 5)) for _ in range(6)]
        await asyncio.sleep(0.05)
        started = time.monotonic()
        assert await other.run(lambda: 42) == 42
        took = time.monotonic() - started
        unblock.set()
        await asyncio.gather(*blocked)
        return took

    try:
        assert asyncio.run(run()) < 0.5
    finally:
        stuck.close()
        other.close()


class OneHangingStore:
    """Two not-ready stores: "tarpit" never answers, "good" answers at once."""

    def __init__(self) -> None:
        self.bodies = [
            ("SecretStore", {"metadata": {"name": n, "namespace": "shop", "generation": 1}, "spec": {}})
            for n in ("tarpit", "good")
        ]

    def not_ready(self) -> list[tuple[str, dict[str, Any]]]:
        return self.bodies

    async def client_for(self, kind: str, body: Any) -> Any:
        if body["metadata"]["name"] == "tarpit":
            await asyncio.sleep(3600)
        raise StoreTimeout("SecretStore shop/good: the vault answered 503")


class StatusKube:
    def __init__(self) -> None:
        self.patched: list[str] = []

    async def read_secret(self, *_: Any) -> dict[str, Any]:
        return {"data": {c.HMAC_KEY_FIELD: base64.b64encode(KEY).decode()}}

    async def patch_status(self, plural: str, namespace: str, name: str, status: Any) -> None:
        self.patched.append(name)


def test_housekeeping_checks_every_store_without_waiting_for_one_that_hangs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(housekeeping, "STORE_RECHECK_SECONDS", 0.01)
    kube, stores = StatusKube(), OneHangingStore()

    class NoCache:
        def prune(self, _: float) -> None:
            return None

    async def run() -> None:
        task = asyncio.create_task(
            housekeeping.housekeeping(kube, stores, NoCache(), "vaultsync", KEY)  # type: ignore[arg-type]
        )
        for _ in range(100):
            await asyncio.sleep(0.01)
            if "good" in kube.patched:
                break
        task.cancel()

    asyncio.run(run())
    assert kube.patched == ["good"]


def parse(*argv: str) -> Config:
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    return from_arguments(parser.parse_args(list(argv)))


def test_the_deadline_and_the_store_limit_are_flags_with_defaults() -> None:
    assert parse().sync_timeout == 60.0
    assert parse().store_concurrency == 16
    assert parse("--sync-timeout", "1m30s", "--store-concurrency", "2").sync_timeout == 90.0
    with pytest.raises(SystemExit):
        parse("--sync-timeout", "0s")
    with pytest.raises(SystemExit):
        parse("--store-concurrency", "0")
