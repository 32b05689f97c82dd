"""A `force-sync` annotation set while the operator was down is handled at the next start:
the first sync after the listing carries its token (and reads the vault afresh), so the
status's `forceSyncHandled` answers it. Before, the token listed with the object was taken
as already seen and the request was never answered."""

from __future__ import annotations

import asyncio
from typing import Any

from vaultsync import constants as c
from vaultsync.constants import Reason
from vaultsync.plan import SyncResult
from vaultsync.scheduler import Scheduler


class RecordingReconciler:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def sync(self, *args: Any, **kwargs: Any) -> SyncResult:
        self.calls.append(kwargs)
        return SyncResult(Reason.SYNCED, "ok")


def listed(token: str, handled: str | None) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "app",
            "namespace": "shop",
            "uid": "u1",
            "generation": 1,
            "annotations": {c.ANNOTATION_FORCE_SYNC: token},
        },
        "spec": {"storeRef": {"name": "fake"}, "data": [{"secretKey": "a", "remoteRef": {"key": "k"}}]},
        "status": {"observedGeneration": 1, "forceSyncHandled": handled},
    }


def first_sync(body: dict[str, Any]) -> dict[str, Any]:
    reconciler = RecordingReconciler()

    async def run() -> None:
        scheduler = Scheduler(reconciler, b"k" * 32, workers=1)  # type: ignore[arg-type]
        scheduler.observe(body)
        scheduler.start()
        for _ in range(200):
            await asyncio.sleep(0.01)
            if reconciler.calls:
                break
        await scheduler.stop()

    asyncio.run(run())
    return reconciler.calls[0]


def test_a_token_set_while_the_operator_was_down_is_handled_at_start() -> None:
    call = first_sync(listed("again", handled="before"))
    assert call["force_token"] == "again"
    assert call["max_age"] == 0.0  # forced: the vault is read, not the cache


def test_a_handled_token_is_not_forced_again() -> None:
    call = first_sync(listed("again", handled="again"))
    assert call["force_token"] is None
