"""The chaos suite's one-writer check reads audit events correctly (tests/chaos/audit.py).

The suite's end-to-end run can only show that no overlap happened; these cases show the
check would have seen one: a write by a replica after another took the Lease, a write
before any Lease, and failed or foreign writes that must not count.
"""

from __future__ import annotations

from typing import Any

from tests.chaos import audit

A = "system:serviceaccount:ops:replica-a"
B = "system:serviceaccount:ops:replica-b"


def _event(
    at: str, user: str, resource: str, name: str, verb: str = "update", code: int = 200
) -> dict[str, Any]:
    return {
        "requestReceivedTimestamp": f"2026-01-01T00:00:{at}Z",
        "user": {"username": user},
        "verb": verb,
        "objectRef": {"resource": resource, "name": name},
        "responseStatus": {"code": code},
    }


def _check(*events: dict[str, Any]) -> audit.Report:
    return audit.check_one_writer(audit.writes(events, [A, B]), "vaultsync")


def test_writes_inside_each_replicas_own_term_are_fine() -> None:
    report = _check(
        _event("01.000", A, "leases", "vaultsync", "create", 201),
        _event("02.000", A, "secrets", "db"),
        _event("20.000", B, "leases", "vaultsync"),
        _event("21.000", B, "secrets", "db"),
    )
    assert report.violations == []
    assert [holder for holder, _ in report.terms] == [A, B]
    assert report.writes == {A: 1, B: 1}


def test_a_write_after_the_other_replica_took_the_lease_is_a_violation() -> None:
    report = _check(
        _event("01.000", A, "leases", "vaultsync", "create", 201),
        _event("20.000", B, "leases", "vaultsync"),
        _event("20.500", A, "externalsecrets", "db", "patch"),
    )
    assert len(report.violations) == 1
    assert "replica-a patch externalsecrets/db while the Lease was held by " + B in report.violations[0]


def test_a_write_before_any_lease_is_a_violation() -> None:
    assert _check(_event("01.000", B, "secrets", "db", "create", 201)).violations


def test_refused_writes_and_other_users_do_not_count() -> None:
    report = _check(
        _event("01.000", A, "leases", "vaultsync", "create", 201),
        _event("02.000", B, "secrets", "db", code=409),
        _event("03.000", "kwok-admin", "secrets", "db"),
        _event("04.000", B, "leases", "vaultsync", code=409),
    )
    assert report.violations == []
    assert [holder for holder, _ in report.terms] == [A]
