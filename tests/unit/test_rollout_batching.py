"""When a namespace's rotations are due: after a quiet period, never later than the window.

`Batches` is pure bookkeeping with the time passed in, so every case here is exact: no
clock, no sleeping. tests/unit/test_rollout_service.py drives the same rules through
`Rollouts` and its timers.
"""

from __future__ import annotations

from vaultsync import constants as c
from vaultsync.kube import ObjectRef
from vaultsync.rollout import Batches, Rotation

ES = ObjectRef(c.API_VERSION, c.KIND_EXTERNAL_SECRET, "shop", "db-creds", "uid-es")
QUIET, WINDOW = 1.0, 5.0


def rotation(secret: str, fingerprint: str = "fp-1") -> Rotation:
    return Rotation(secret, fingerprint, ES)


def test_a_lone_rotation_is_due_after_the_quiet_period() -> None:
    batches = Batches(QUIET, WINDOW)
    batches.add("shop", rotation("db-creds"), now=100.0)
    assert batches.due("shop") == 101.0
    assert batches.due("other") is None


def test_each_new_rotation_restarts_the_quiet_period() -> None:
    batches = Batches(QUIET, WINDOW)
    batches.add("shop", rotation("db-creds"), now=100.0)
    batches.add("shop", rotation("api-keys"), now=100.6)
    batches.add("shop", rotation("cache-creds"), now=101.2)
    assert batches.due("shop") == 102.2
    assert sorted(batches.take("shop")) == ["api-keys", "cache-creds", "db-creds"]


def test_a_steady_trickle_is_due_at_the_window_after_the_first_rotation() -> None:
    batches = Batches(QUIET, WINDOW)
    for step in range(20):
        batches.add("shop", rotation(f"s-{step}"), now=100.0 + step * 0.5)
    assert batches.due("shop") == 105.0


def test_the_same_rotation_notified_again_does_not_hold_the_batch_back() -> None:
    batches = Batches(QUIET, WINDOW)
    batches.add("shop", rotation("db-creds"), now=100.0)
    batches.add("shop", rotation("db-creds"), now=100.9)  # a recheck: nothing new
    assert batches.due("shop") == 101.0
    batches.add("shop", rotation("db-creds", "fp-2"), now=100.9)  # a new value: new
    assert batches.due("shop") == 101.9
    assert batches.take("shop")["db-creds"].fingerprint == "fp-2"


def test_namespaces_are_batched_apart() -> None:
    batches = Batches(QUIET, WINDOW)
    batches.add("shop", rotation("db-creds"), now=100.0)
    batches.add("billing", rotation("db-creds"), now=100.5)
    assert (batches.due("shop"), batches.due("billing")) == (101.0, 101.5)
    assert list(batches.take("shop")) == ["db-creds"]
    assert batches.namespaces() == ["billing"]


def test_a_taken_batch_starts_afresh() -> None:
    batches = Batches(QUIET, WINDOW)
    batches.add("shop", rotation("db-creds"), now=100.0)
    batches.take("shop")
    assert batches.due("shop") is None
    assert batches.take("shop") == {}
    batches.add("shop", rotation("db-creds", "fp-2"), now=130.0)
    assert batches.due("shop") == 131.0  # not bounded by the old batch's window


def test_the_quiet_period_never_exceeds_the_window() -> None:
    batches = Batches(quiet=30.0, window=2.0)
    batches.add("shop", rotation("db-creds"), now=100.0)
    assert batches.due("shop") == 102.0
    immediate = Batches(quiet=1.0, window=0.0)
    immediate.add("shop", rotation("db-creds"), now=100.0)
    assert immediate.due("shop") == 100.0


def test_put_back_rotations_are_due_at_their_retry_or_with_the_next_batch() -> None:
    batches = Batches(QUIET, WINDOW)
    batches.put_back("shop", {"db-creds": rotation("db-creds")}, at=110.0)
    batches.put_back("shop", {"db-creds": rotation("db-creds")}, at=120.0)  # the earlier retry stays
    assert batches.due("shop") == 110.0
    batches.add("shop", rotation("api-keys"), now=102.0)
    assert batches.due("shop") == 103.0
    assert sorted(batches.take("shop")) == ["api-keys", "db-creds"]


def test_a_newer_rotation_wins_over_the_one_put_back() -> None:
    batches = Batches(QUIET, WINDOW)
    batches.add("shop", rotation("db-creds", "fp-2"), now=100.0)
    batches.put_back("shop", {"db-creds": rotation("db-creds", "fp-1")}, at=110.0)
    assert batches.take("shop")["db-creds"].fingerprint == "fp-2"
