"""Status: one Ready condition whose transition time moves only when it flips; failures keep the last sync."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from vaultsync.constants import Reason
from vaultsync.plan import SyncResult, desired_status
from vaultsync.plan import material as _material

LONG_AGO = "2020-01-01T00:00:00Z"
SYNCED = SyncResult(Reason.SYNCED, "Secret db-creds is in sync with SecretStore shop/aws")
FAILED = SyncResult(Reason.PROVIDER_ERROR, "spec.data[0].remoteRef.key: vault unreachable")
MISSING = SyncResult(Reason.KEY_NOT_FOUND, "spec.data[0].remoteRef.key: key 'prod/db' does not exist")
FP = "hmac-sha256:" + "a" * 64


def ready(status: dict[str, Any]) -> dict[str, Any]:
    (condition,) = status["conditions"]
    assert condition["type"] == "Ready"
    return condition


def old_status(state: str, reason: Reason, **extra: Any) -> dict[str, Any]:
    return {
        "observedGeneration": 3,
        "conditions": [
            {
                "type": "Ready",
                "status": state,
                "reason": reason.value,
                "message": "m",
                "lastTransitionTime": LONG_AGO,
            }
        ],
        **extra,
    }


def recently(stamp: str) -> bool:
    moment = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return abs((datetime.now(UTC) - moment).total_seconds()) < 60


def test_a_first_sync_reports_ready_with_what_was_read() -> None:
    status = desired_status({}, 4, SYNCED, {"prod/db": "3"}, FP, None)
    condition = ready(status)
    assert (condition["status"], condition["reason"], condition["message"]) == (
        "True",
        "Synced",
        SYNCED.message,
    )
    assert recently(condition["lastTransitionTime"])
    assert status["observedGeneration"] == 4
    assert status["remoteVersions"] == {"prod/db": "3"}
    assert status["dataHMAC"] == FP


def test_a_first_failure_reports_not_ready_with_the_reason_and_message() -> None:
    condition = ready(desired_status({}, 1, FAILED, {}, None, None))
    assert (condition["status"], condition["reason"], condition["message"]) == (
        "False",
        "ProviderError",
        FAILED.message,
    )
    assert recently(condition["lastTransitionTime"])


def test_the_transition_time_is_kept_while_ready_stays_true() -> None:
    status = desired_status(old_status("True", Reason.SYNCED), 4, SYNCED, {"prod/db": "4"}, FP, None)
    assert ready(status)["lastTransitionTime"] == LONG_AGO


def test_the_transition_time_is_kept_while_ready_stays_false_even_if_the_reason_changes() -> None:
    status = desired_status(old_status("False", Reason.PROVIDER_ERROR), 4, MISSING, {}, None, None)
    condition = ready(status)
    assert condition["lastTransitionTime"] == LONG_AGO
    assert (condition["reason"], condition["message"]) == ("KeyNotFound", MISSING.message)


def test_the_transition_time_moves_when_ready_flips_to_false() -> None:
    condition = ready(desired_status(old_status("True", Reason.SYNCED), 4, FAILED, {}, None, None))
    assert condition["status"] == "False"
    assert condition["lastTransitionTime"] != LONG_AGO
    assert recently(condition["lastTransitionTime"])


def test_the_transition_time_moves_when_ready_flips_to_true() -> None:
    condition = ready(desired_status(old_status("False", Reason.PROVIDER_ERROR), 4, SYNCED, {}, FP, None))
    assert condition["status"] == "True"
    assert recently(condition["lastTransitionTime"])


def test_a_condition_without_a_transition_time_gets_one() -> None:
    old = {"conditions": [{"type": "Ready", "status": "True", "reason": "Synced"}]}
    assert recently(ready(desired_status(old, 1, SYNCED, {}, FP, None))["lastTransitionTime"])


def test_a_failure_keeps_the_last_synced_versions_fingerprint_and_time() -> None:
    old = old_status(
        "True", Reason.SYNCED, remoteVersions={"prod/db": "3"}, dataHMAC=FP, syncedAt="2026-11-26T08:00:00Z"
    )
    status = desired_status(old, 5, FAILED, {}, None, None)
    assert status["remoteVersions"] == {"prod/db": "3"}
    assert status["dataHMAC"] == FP
    assert status["syncedAt"] == "2026-11-26T08:00:00Z"
    assert status["observedGeneration"] == 5


def test_a_success_replaces_the_versions_and_fingerprint() -> None:
    old = old_status("True", Reason.SYNCED, remoteVersions={"prod/db": "3", "gone": "1"}, dataHMAC="old")
    status = desired_status(old, 4, SYNCED, {"prod/db": "4"}, FP, None)
    assert status["remoteVersions"] == {"prod/db": "4"}
    assert status["dataHMAC"] == FP


def test_a_handled_force_sync_is_recorded_and_remembered() -> None:
    status = desired_status({}, 1, SYNCED, {}, FP, "token-1")
    assert status["forceSyncHandled"] == "token-1"
    later = desired_status(status, 1, SYNCED, {}, FP, None)
    assert later["forceSyncHandled"] == "token-1"


def test_without_a_force_sync_there_is_no_force_sync_field() -> None:
    assert "forceSyncHandled" not in desired_status({}, 1, SYNCED, {}, FP, None)


def test_the_same_outcome_again_is_not_a_material_change() -> None:
    first = desired_status({}, 4, SYNCED, {"prod/db": "3"}, FP, None)
    first["syncedAt"] = "2026-11-26T08:00:00Z"
    first["nextRefreshAt"] = "2026-11-26T09:00:00Z"
    again = desired_status(first, 4, SYNCED, {"prod/db": "3"}, FP, None)
    again["syncedAt"] = "2026-11-26T09:00:00Z"
    again["nextRefreshAt"] = "2026-11-26T10:00:00Z"
    assert _material(again) == _material(first)


def test_a_new_version_a_new_generation_or_a_new_reason_is_a_material_change() -> None:
    base = desired_status({}, 4, SYNCED, {"prod/db": "3"}, FP, None)
    assert _material(desired_status(base, 4, SYNCED, {"prod/db": "4"}, FP, None)) != _material(base)
    assert _material(desired_status(base, 5, SYNCED, {"prod/db": "3"}, FP, None)) != _material(base)
    assert _material(desired_status(base, 4, FAILED, {}, None, None)) != _material(base)


def test_fields_without_a_value_do_not_count_as_material() -> None:
    status = desired_status({}, 1, FAILED, {}, None, None)
    assert status["dataHMAC"] is None
    assert "dataHMAC" not in _material(status)
    assert "remoteVersions" not in _material(status)
