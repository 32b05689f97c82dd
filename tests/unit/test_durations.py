"""Refresh intervals parse like Go durations, and refreshes and retries spread out instead of piling up."""

from __future__ import annotations

import random

import pytest

from vaultsync.schedule import (
    BACKOFF_MAX_SECONDS,
    MIN_REFRESH_SECONDS,
    backoff,
    clamped,
    jittered,
    next_on_grid,
    parse_duration,
    refresh_interval,
)


class _Fixed(random.Random):
    """A random source that always draws the same number, to see the bounds of a jittered value."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self._value = value

    def random(self) -> float:
        return self._value


LOWEST, HIGHEST = _Fixed(0.0), _Fixed(0.999999)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("2h45m30s", 9930.0),
        ("0", 0.0),
        ("0s", 0.0),
        ("1.5h", 5400.0),
        ("500ms", 0.5),
    ],
)
def test_go_durations_are_read_as_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "1d", "m", "-1s", "1h 30m", "1h30", "h1", "30s5", "1w", "forever"])
def test_anything_but_a_go_duration_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="must be a duration such as 30s"):
        parse_duration(text)


def test_jitter_only_ever_stretches_an_interval_by_up_to_ten_percent() -> None:
    rng = random.Random(7)
    draws = [jittered(3600.0, rng) for _ in range(1000)]
    assert all(3600.0 <= d < 3960.0 for d in draws)


def test_jitter_spreads_a_thousand_hourly_refreshes_over_many_distinct_seconds() -> None:
    rng = random.Random(11)
    seconds = {int(jittered(3600.0, rng)) for _ in range(1000)}
    # The window is 360 s wide; 1000 uniform draws fill ~94% of it.
    assert len(seconds) > 300


def test_jitter_of_a_zero_interval_stays_zero() -> None:
    assert jittered(0.0, random.Random(1)) == 0.0


def test_backoff_grows_with_each_attempt_until_the_cap() -> None:
    ceilings = [backoff(attempt, rng=HIGHEST) for attempt in range(1, 10)]
    assert ceilings == sorted(ceilings)
    assert ceilings[0] == pytest.approx(5.0, abs=1e-3)
    assert ceilings[1] == pytest.approx(10.0, abs=1e-3)
    assert ceilings[-1] == pytest.approx(BACKOFF_MAX_SECONDS, abs=1e-3)


def test_backoff_is_never_more_than_five_minutes() -> None:
    rng = random.Random(3)
    assert BACKOFF_MAX_SECONDS == 300.0
    assert all(backoff(attempt, rng=rng) <= 300.0 for attempt in range(1, 200) for _ in range(20))


def test_backoff_survives_days_of_consecutive_failures() -> None:
    # The scheduler counts every failed attempt; at <= 5 min apart, a key missing for
    # four days reaches attempt ~1100. The delay must stay capped, not overflow.
    assert backoff(1100, rng=HIGHEST) <= BACKOFF_MAX_SECONDS
    assert backoff(100_000, rng=HIGHEST) <= BACKOFF_MAX_SECONDS


def test_backoff_is_jittered_between_half_and_all_of_its_ceiling() -> None:
    assert backoff(3, rng=LOWEST) == pytest.approx(10.0)
    assert backoff(3, rng=HIGHEST) == pytest.approx(20.0, abs=1e-3)
    rng = random.Random(5)
    assert len({round(backoff(3, rng=rng), 3) for _ in range(100)}) > 50


def test_backoff_never_retries_sooner_than_the_server_asked() -> None:
    assert backoff(1, retry_after=120.0, rng=HIGHEST) == 120.0
    assert backoff(9, retry_after=600.0, rng=HIGHEST) == 600.0


def test_backoff_ignores_a_retry_after_shorter_than_its_own_delay() -> None:
    assert backoff(4, retry_after=1.0, rng=LOWEST) == pytest.approx(20.0)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (1000.0, 1060.0),
        (1030.0, 1060.0),
        (1059.9, 1060.0),
        (1060.0, 1120.0),
        (1185.0, 1240.0),
        (1000.0 + 60 * 1000 + 1, 1000.0 + 60 * 1001),
    ],
)
def test_after_a_restart_the_next_refresh_resumes_on_the_old_grid(now: float, expected: float) -> None:
    assert next_on_grid(synced_at=1000.0, interval=60.0, now=now) == pytest.approx(expected)


def test_a_sync_time_in_the_future_is_itself_the_next_refresh() -> None:
    assert next_on_grid(synced_at=2000.0, interval=60.0, now=1000.0) == 2000.0


@pytest.mark.parametrize(
    ("interval", "floor", "used"),
    [(0.005, 10.0, 10.0), (1.0, 10.0, 10.0), (10.0, 10.0, 10.0), (3600.0, 10.0, 3600.0), (0.0, 10.0, 0.0)],
)
def test_a_refresh_interval_shorter_than_the_floor_is_raised_to_it_and_zero_still_means_once(
    interval: float, floor: float, used: float
) -> None:
    assert clamped(interval, floor) == used


def test_the_default_floor_is_ten_seconds() -> None:
    assert MIN_REFRESH_SECONDS == 10.0


@pytest.mark.parametrize("text", ["99999999999h", "8784h1s", "9" * 400 + "h"])
def test_a_refresh_interval_beyond_the_ceiling_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="at most 8784h"):
        refresh_interval(text)
