"""An ExternalSecret deleted while its watch was away is forgotten, not written for again.

After a watch gap the scheduler may still hold an object whose deletion it never saw; its
Owner Secret is then garbage-collected, and the Secret watch reports that deletion. The
scheduler asks the API server (one GET, by the reconciler) before writing again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Any

from vaultsync import constants as c
from vaultsync.relist import Listings
from vaultsync.scheduler import Scheduler
from vaultsync.stores import Stores

BODY = {
    "metadata": {"name": "app", "namespace": "shop", "uid": "u1", "generation": 1},
    "spec": {"storeRef": {"name": "fake"}, "data": [{"secretKey": "a", "remoteRef": {"key": "k"}}]},
}
DELETED_SECRET = {
    "metadata": {"name": "app", "namespace": "shop", "labels": {c.LABEL_OWNER_NAME: "app"}},
    "data": {},
}


class Reconciler:
    def __init__(self, exists: bool) -> None:
        self.exists = exists
        self.asked: list[tuple[str, str, str]] = []
        self.syncs = 0

    async def still_exists(self, namespace: str, name: str, uid: str) -> bool:
        self.asked.append((namespace, name, uid))
        return self.exists

    async def sync(self, *args: Any, **kwargs: Any) -> Any:
        self.syncs += 1
        raise RuntimeError("reconcile reached")


def _after_target_deleted(reconciler: Reconciler) -> Scheduler:
    async def run() -> Scheduler:
        scheduler = Scheduler(reconciler, b"k" * 32, workers=1)  # type: ignore[arg-type]
        scheduler.observe(BODY)
        tracked = scheduler._tracked[("shop", "app")]
        tracked.due = None  # not yet run: only the Secret's deletion schedules it
        scheduler.secret_changed(DELETED_SECRET, deleted=True)
        scheduler.start()
        for _ in range(100):
            await asyncio.sleep(0.01)
            if reconciler.asked and (reconciler.syncs or not reconciler.exists):
                break
        await scheduler.stop()
        return scheduler

    return asyncio.run(run())


def test_an_owner_gone_while_unwatched_is_forgotten_and_its_secret_not_written() -> None:
    reconciler = Reconciler(exists=False)
    scheduler = _after_target_deleted(reconciler)
    assert reconciler.asked == [("shop", "app", "u1")]
    assert reconciler.syncs == 0
    assert ("shop", "app") not in scheduler._tracked


def test_an_owner_still_there_is_reconciled_and_asked_about_once() -> None:
    reconciler = Reconciler(exists=True)
    scheduler = _after_target_deleted(reconciler)
    assert reconciler.asked == [("shop", "app", "u1")]
    assert reconciler.syncs >= 1
    assert not scheduler._tracked[("shop", "app")].verify


def test_a_listing_hands_over_what_it_saw_once_it_went_quiet() -> None:
    handed: list[set[Hashable]] = []

    async def done(seen: set[Hashable]) -> None:
        handed.append(seen)

    async def run() -> None:
        listings = Listings(0.05, done)
        listings.observe(("shop", "before"), listed=False)  # a watch event, no listing running
        listings.observe(("shop", "a"), listed=True)
        listings.observe(("shop", "added-meanwhile"), listed=False)
        await asyncio.sleep(0.02)
        listings.observe(("shop", "b"), listed=True)  # still the same listing
        await asyncio.sleep(0.1)
        listings.observe(("shop", "c"), listed=True)  # a later re-list
        await asyncio.sleep(0.1)
        await listings.stop()

    asyncio.run(run())
    assert handed == [{("shop", "a"), ("shop", "added-meanwhile"), ("shop", "b")}, {("shop", "c")}]


def test_a_relist_without_an_external_secret_has_it_confirmed_then_forgotten() -> None:
    reconciler = Reconciler(exists=False)

    async def run() -> Scheduler:
        scheduler = Scheduler(reconciler, b"k" * 32, workers=1)  # type: ignore[arg-type]
        scheduler.observe(BODY)
        scheduler.observe({**BODY, "metadata": {**BODY["metadata"], "name": "kept", "uid": "u2"}})
        for tracked in scheduler._tracked.values():
            tracked.due = None
        await scheduler.relisted({("shop", "kept")})
        scheduler.start()
        for _ in range(100):
            await asyncio.sleep(0.01)
            if ("shop", "app") not in scheduler._tracked:
                break
        await scheduler.stop()
        return scheduler

    scheduler = asyncio.run(run())
    assert reconciler.asked == [("shop", "app", "u1")]  # only the one the list lacked
    assert list(scheduler._tracked) == [("shop", "kept")]


def test_a_relist_without_a_store_drops_it_from_the_mirror() -> None:
    stores = Stores(None)  # type: ignore[arg-type]
    for name in ("gone", "kept"):
        stores.observe(c.KIND_SECRET_STORE, {"metadata": {"namespace": "shop", "name": name}}, deleted=False)
    stores.observe(c.KIND_CLUSTER_SECRET_STORE, {"metadata": {"name": "gone"}}, deleted=False)
    asyncio.run(stores.relisted(c.KIND_SECRET_STORE, {("shop", "kept")}))
    assert sorted(stores.mirror.keys(), key=str) == [
        (c.KIND_CLUSTER_SECRET_STORE, None, "gone"),  # another kind's listing decides for it
        (c.KIND_SECRET_STORE, "shop", "kept"),
    ]


def test_an_object_listed_again_starts_a_new_listing() -> None:
    handed: list[set[Hashable]] = []

    async def done(seen: set[Hashable]) -> None:
        handed.append(seen)

    async def run() -> None:
        listings = Listings(0.05, done)
        listings.observe("a", listed=True)
        listings.observe("b", listed=True)
        listings.observe("b", listed=True)  # a re-list right after: "a" is gone
        await asyncio.sleep(0.1)
        await listings.stop()

    asyncio.run(run())
    assert handed == [{"a", "b"}, {"b"}]
