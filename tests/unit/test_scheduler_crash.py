"""A reconcile that crashes is logged with its frames and type, never its message, and retried."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from vaultsync.scheduler import Scheduler

VALUE = "Canary-value-in-an-sdk-message-31"


class CrashingReconciler:
    def __init__(self) -> None:
        self.calls = 0

    async def sync(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        raise RuntimeError(f"the SDK quoted {VALUE}")


BODY = {
    "metadata": {"name": "app", "namespace": "shop", "uid": "u1", "generation": 1},
    "spec": {"storeRef": {"name": "fake"}, "data": [{"secretKey": "a", "remoteRef": {"key": "k"}}]},
}


def test_a_crashing_reconcile_is_logged_without_its_message_and_rescheduled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reconciler = CrashingReconciler()

    async def run() -> Scheduler:
        scheduler = Scheduler(reconciler, b"k" * 32, workers=1)  # type: ignore[arg-type]
        scheduler.observe(BODY)
        scheduler.start()
        for _ in range(100):
            await asyncio.sleep(0.01)
            if reconciler.calls:
                break
        await scheduler.stop()
        return scheduler

    with caplog.at_level(logging.ERROR, logger="vaultsync.scheduler"):
        scheduler = asyncio.run(run())
    (record,) = [r for r in caplog.records if r.getMessage() == "reconcile crashed"]
    assert record.error == "RuntimeError"  # type: ignore[attr-defined]
    assert "scheduler.py" in record.traceback  # type: ignore[attr-defined]
    assert record.exc_info is None
    rendered = logging.Formatter().format(record) + repr(record.__dict__)
    assert VALUE not in rendered
    assert scheduler._tracked[("shop", "app")].due is not None  # retried with backoff, not dropped
