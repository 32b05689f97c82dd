"""Leader election's pure rules (client-go's): when a Lease may be taken, what a write holds,
when the holder must stop. The processes against a real API server are in
tests/e2e/test_leader_election.py."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from vaultsync.conditions import micro_time
from vaultsync.leader import (
    LeaseTiming,
    Observation,
    Record,
    next_record,
    released,
    renew_deadline_passed,
)

TIMING = LeaseTiming(duration=15, renew_deadline=10, retry_period=2)
WALL = datetime(2026, 11, 30, 3, 0, 0, 123456, tzinfo=UTC)


def _record(holder: str, transitions: int = 0, duration: int = 15) -> Record:
    return Record(holder, duration, "2026-11-30T02:00:00.000000Z", "2026-11-30T02:59:58.000000Z", transitions)


def test_the_defaults_are_client_gos() -> None:
    assert (TIMING.duration, TIMING.renew_deadline, TIMING.retry_period) == (15, 10, 2)


@pytest.mark.parametrize(
    ("duration", "deadline", "retry", "flag"),
    [
        (10, 10, 2, "--leader-elect-lease-duration"),
        (15, 2.4, 2, "--leader-elect-renew-deadline"),
        (15, 10, 0, "--leader-elect-retry-period"),
    ],
)
def test_inconsistent_durations_are_refused_naming_the_flag(
    duration: float, deadline: float, retry: float, flag: str
) -> None:
    with pytest.raises(ValueError, match=flag):
        LeaseTiming(duration, deadline, retry)


def test_a_lease_held_by_another_is_taken_only_after_it_stayed_unchanged_for_its_duration() -> None:
    seen = Observation()
    seen.observe(_record("a"), now=100.0)
    assert seen.held_by_other("b", now=114.9)
    assert not seen.held_by_other("b", now=115.0)


def test_a_renew_by_the_holder_restarts_the_wait_by_the_observers_own_clock() -> None:
    seen = Observation()
    seen.observe(_record("a"), now=100.0)
    renewed = Record("a", 15, "2026-11-30T02:00:00.000000Z", "2026-11-30T02:59:59.000000Z", 0)
    seen.observe(renewed, now=110.0)
    assert seen.held_by_other("b", now=124.0)
    seen.observe(renewed, now=124.0)  # unchanged: the wait is not restarted
    assert not seen.held_by_other("b", now=125.0)


def test_a_released_or_own_lease_is_free_at_once() -> None:
    seen = Observation()
    seen.observe(released(_record("a"), WALL), now=100.0)
    assert not seen.held_by_other("b", now=100.0)
    seen.observe(_record("b"), now=101.0)
    assert not seen.held_by_other("b", now=101.0)


def test_a_renew_keeps_acquire_time_and_transitions() -> None:
    old = _record("a", transitions=3)
    new = next_record(old, "a", TIMING, WALL)
    assert (new.holder, new.acquire_time, new.transitions) == ("a", old.acquire_time, 3)
    assert new.renew_time == "2026-11-30T03:00:00.123456Z"


def test_a_takeover_counts_a_transition_and_starts_a_new_term() -> None:
    new = next_record(_record("a", transitions=3), "b", TIMING, WALL)
    assert (new.holder, new.transitions, new.duration_seconds) == ("b", 4, 15)
    assert new.acquire_time == new.renew_time == micro_time(WALL)
    assert next_record(None, "b", TIMING, WALL).transitions == 0


def test_release_empties_the_holder_and_shortens_the_duration_to_a_second() -> None:
    gone = released(_record("a", transitions=2), WALL)
    assert (gone.holder, gone.duration_seconds, gone.transitions) == ("", 1, 2)


def test_the_renew_deadline_is_counted_from_the_last_successful_renew() -> None:
    assert not renew_deadline_passed(100.0, 109.9, TIMING)
    assert renew_deadline_passed(100.0, 110.0, TIMING)


def test_a_lease_spec_round_trips() -> None:
    record = _record("a", transitions=5)
    assert Record.of({"spec": record.spec()}) == record
    assert Record.of({}) == Record("", 0, None, None, 0)


def test_fractional_durations_round_up_to_whole_lease_seconds() -> None:
    assert LeaseTiming(4.5, 3, 1).duration_seconds == 5
