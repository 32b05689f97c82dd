"""A tenant's refreshInterval below the operator's floor is raised to it; "0" still syncs once."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import pytest

from vaultsync.config import Config, add_run_arguments, from_arguments
from vaultsync.constants import Reason
from vaultsync.plan import SyncResult
from vaultsync.scheduler import Scheduler


class RecordingReconciler:
    def __init__(self) -> None:
        self.next_refreshes: list[float | None] = []

    async def sync(self, *args: Any, next_refresh: float | None, **kwargs: Any) -> SyncResult:
        self.next_refreshes.append(next_refresh)
        return SyncResult(Reason.SYNCED, "ok")


def body(interval: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "app", "namespace": "shop", "uid": "u1", "generation": 1},
        "spec": {
            "storeRef": {"name": "fake"},
            "refreshInterval": interval,
            "data": [{"secretKey": "a", "remoteRef": {"key": "k"}}],
        },
    }


def first_sync(interval: str, **kwargs: Any) -> tuple[float | None, float | None]:
    """The next refresh the first sync planned, and when the scheduler has it due."""
    reconciler = RecordingReconciler()

    async def run() -> tuple[float | None, float | None]:
        scheduler = Scheduler(reconciler, b"k" * 32, workers=1, clock=lambda: 0.0, **kwargs)  # type: ignore[arg-type]
        scheduler.observe(body(interval))
        scheduler.start()
        for _ in range(100):
            await asyncio.sleep(0.01)
            if reconciler.next_refreshes:
                break
        await asyncio.sleep(0.05)
        await scheduler.stop()
        return reconciler.next_refreshes[0], scheduler._tracked[("shop", "app")].due

    return asyncio.run(run())


@pytest.mark.parametrize("interval", ["5ms", "1ns", "9s"])
def test_an_interval_below_the_default_floor_is_raised_to_ten_seconds(interval: str) -> None:
    planned, due = first_sync(interval)
    assert planned is not None and 10.0 <= planned <= 11.0
    assert due is not None and due >= 10.0


def test_the_floor_is_configurable() -> None:
    planned, _ = first_sync("5ms", min_refresh=60.0)
    assert planned is not None and 60.0 <= planned <= 66.0


def test_an_interval_above_the_floor_is_kept() -> None:
    planned, _ = first_sync("5m")
    assert planned is not None and 300.0 <= planned <= 330.0


def test_an_interval_of_zero_still_syncs_once_and_never_again() -> None:
    planned, due = first_sync("0")
    assert planned is None
    assert due is None


def parse(*argv: str) -> Config:
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    return from_arguments(parser.parse_args(list(argv)))


def test_the_floor_and_the_cache_cap_are_flags_with_documented_defaults() -> None:
    assert parse().min_refresh_interval == 10.0
    assert parse().cache_max_bytes == 128 * 1024 * 1024
    assert parse("--min-refresh-interval", "1m30s").min_refresh_interval == 90.0
    assert parse("--cache-max-bytes", "1048576").cache_max_bytes == 1048576


def test_the_floor_can_be_set_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULTSYNC_MIN_REFRESH_INTERVAL", "2s")
    assert parse().min_refresh_interval == 2.0


def test_a_floor_that_is_no_duration_is_refused_at_start(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--min-refresh-interval", "soon")
    assert "--min-refresh-interval: invalid duration value: 'soon'" in capsys.readouterr().err
