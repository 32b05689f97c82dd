"""The reconcile's plan as pure logic: which Secret write, status and Event follow from the
values fetched, the Secret as it is and the spec. No server, no clock: `now` is given."""

from __future__ import annotations

import base64
import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from vaultsync import constants as c
from vaultsync.constants import Reason
from vaultsync.errors import (
    KubeConflict,
    KubeError,
    KubeForbidden,
    KubeInvalid,
    KubeNotFound,
    TargetConflict,
    VaultsyncError,
)
from vaultsync.models import ExternalSecret, parse_external_secret
from vaultsync.plan import (
    Event,
    SyncResult,
    new_secret,
    plan_invalid,
    plan_removal,
    plan_report,
    plan_write,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
LONG_AGO = "2020-01-01T00:00:00Z"
DATA = {"password": b"pw-1"}
FP = "hmac-sha256:" + "1" * 64
FP2 = "hmac-sha256:" + "2" * 64


def es(
    policy: str = "Owner",
    secret_type: str = "Opaque",
    status: dict[str, Any] | None = None,
    **target: Any,
) -> ExternalSecret:
    return parse_external_secret(
        {
            "metadata": {"name": "app", "namespace": "shop", "uid": "es-uid", "generation": 2},
            "spec": {
                "storeRef": {"name": "s"},
                "target": {"creationPolicy": policy, "type": secret_type, **target},
                "data": [{"secretKey": "password", "remoteRef": {"key": "db"}}],
            },
            "status": status or {},
        }
    )


def stored(body: dict[str, Any]) -> dict[str, Any]:
    """`body` as the API server returns it after a create."""
    out = copy.deepcopy(body)
    out["metadata"].update(uid="secret-uid", resourceVersion="7")
    return out


def foreign(secret_type: str = "Opaque", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "app", "namespace": "shop", "uid": "other-uid", "resourceVersion": "3", **meta},
        "type": secret_type,
        "data": {"other": base64.b64encode(b"theirs").decode()},
    }


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


# The Secret ----------------------------------------------------------------------------


def test_a_first_sync_creates_the_secret_with_its_marks_and_owner() -> None:
    write = plan_write(es(), None, DATA, FP)
    assert write.action == "create" and not write.rotated
    assert write.body is not None
    meta = write.body["metadata"]
    assert write.body["data"] == {"password": b64(b"pw-1")}
    assert meta["labels"] == {c.LABEL_MANAGED_BY: c.MANAGED_BY_VALUE, c.LABEL_OWNER_NAME: "app"}
    assert meta["annotations"] == {c.ANNOTATION_DATA_FINGERPRINT: FP, c.ANNOTATION_MANAGED_KEYS: "password"}
    assert meta["ownerReferences"] == [
        {
            "apiVersion": c.API_VERSION,
            "kind": "ExternalSecret",
            "name": "app",
            "uid": "es-uid",
            "controller": True,
        }
    ]
    assert c.ANNOTATION_PENDING_RESTART not in meta["annotations"]  # a new Secret restarts nobody


def test_orphan_creates_without_an_owner_reference() -> None:
    write = plan_write(es("Orphan"), None, DATA, FP)
    assert write.action == "create" and write.body is not None
    assert "ownerReferences" not in write.body["metadata"]


def test_merge_never_creates() -> None:
    with pytest.raises(TargetConflict) as caught:
        plan_write(es("Merge"), None, DATA, FP)
    assert caught.value.message.startswith("spec.target.creationPolicy: Merge only writes into an existing")


def test_an_unchanged_secret_is_not_written() -> None:
    current = stored(new_secret(es(), DATA, FP))
    before = copy.deepcopy(current)
    assert plan_write(es(), current, DATA, FP).action == "none"
    assert current == before  # the planner never edits what it was given


def test_changed_data_is_an_update_carrying_the_pending_restart_mark() -> None:
    current = stored(new_secret(es(), DATA, FP))
    write = plan_write(es(), current, {"password": b"pw-2"}, FP2)
    assert write.action == "update" and write.rotated and write.body is not None
    annotations = write.body["metadata"]["annotations"]
    assert annotations[c.ANNOTATION_PENDING_RESTART] == FP2  # in the same write as the data
    assert annotations[c.ANNOTATION_DATA_FINGERPRINT] == FP2
    assert write.body["metadata"]["resourceVersion"] == "7"  # guarded replace
    assert write.body["data"] == {"password": b64(b"pw-2")}
    assert c.ANNOTATION_PENDING_RESTART not in current["metadata"]["annotations"]


def test_a_metadata_only_change_is_an_update_that_restarts_nobody() -> None:
    current = stored(new_secret(es(), DATA, FP))
    write = plan_write(es(labels={"tier": "db"}), current, DATA, FP)
    assert write.action == "update" and not write.rotated and write.body is not None
    assert write.body["metadata"]["labels"]["tier"] == "db"
    assert c.ANNOTATION_PENDING_RESTART not in write.body["metadata"]["annotations"]


def test_a_type_change_is_a_recreate_of_that_very_object() -> None:
    current = stored(new_secret(es(), DATA, FP))
    write = plan_write(es(secret_type="example.com/token"), current, DATA, FP)
    assert write.action == "recreate" and write.existing_uid == "secret-uid"
    assert write.body is not None and write.body["type"] == "example.com/token"
    assert "resourceVersion" not in write.body["metadata"] and "uid" not in write.body["metadata"]
    assert not write.rotated  # same data: no restart


def test_owner_and_orphan_never_take_over_a_secret_they_did_not_create() -> None:
    for policy in ("Owner", "Orphan"):
        with pytest.raises(TargetConflict) as caught:
            plan_write(es(policy), foreign(), DATA, FP)
        assert caught.value.message.startswith("spec.target.name: Secret shop/app exists and was not created")


def test_merge_writes_its_keys_into_a_foreign_secret_and_keeps_the_others_without_a_restart_mark() -> None:
    write = plan_write(es("Merge"), foreign(), DATA, FP)
    assert write.action == "update" and write.rotated and write.body is not None
    assert write.body["data"] == {"other": b64(b"theirs"), "password": b64(b"pw-1")}
    annotations = write.body["metadata"]["annotations"]
    assert annotations[c.ANNOTATION_MERGED_BY] == "app"
    assert c.ANNOTATION_PENDING_RESTART not in annotations  # not watched: no mark
    assert "labels" not in write.body["metadata"]  # a Merge target gets no vaultsync labels


def test_merge_refuses_a_secret_that_is_not_opaque() -> None:
    with pytest.raises(TargetConflict) as caught:
        plan_write(es("Merge"), foreign("kubernetes.io/tls"), DATA, FP)
    assert caught.value.message.startswith("spec.target.creationPolicy: Merge writes only into Opaque")


# deletionPolicy Delete, and a deleted Merge ExternalSecret -------------------------------


def test_removal_deletes_only_a_secret_vaultsync_created_and_merge_takes_back_its_keys() -> None:
    ours = stored(new_secret(es(), DATA, FP))
    assert plan_removal("app", "Owner", ours).action == "delete"
    assert plan_removal("app", "Owner", ours).uid == "secret-uid"
    assert plan_removal("app", "Orphan", foreign()).action == "none"
    assert plan_removal("app", "Owner", None).action == "none"
    merged = plan_write(es("Merge"), foreign(), DATA, FP).body
    released = plan_removal("app", "Merge", merged)
    assert released.action == "update" and released.body is not None
    assert released.body["data"] == {"other": b64(b"theirs")}
    assert plan_removal("app", "Merge", foreign()).action == "none"  # nothing of ours in it


# Status and Event ----------------------------------------------------------------------

SYNCED = SyncResult(Reason.SYNCED, "Secret app is in sync with SecretStore shop/s", written=True)


def synced_status() -> dict[str, Any]:
    report = plan_report({}, 2, SYNCED, {"db": "1"}, FP, None, 3600.0, "app", NOW)
    assert report.status is not None
    return report.status


def test_a_write_gives_a_status_with_times_and_a_normal_event() -> None:
    report = plan_report({}, 2, SYNCED, {"db": "1"}, FP, None, 3600.0, "app", NOW)
    assert report.status is not None and report.news
    assert report.status["dataHMAC"] == FP and report.status["observedGeneration"] == 2
    assert report.status["syncedAt"] == "2026-01-02T03:04:05Z"
    assert report.status["nextRefreshAt"] == "2026-01-02T04:04:05Z"
    assert report.status["conditions"][0]["lastTransitionTime"] == "2026-01-02T03:04:05Z"
    assert report.event == Event("Normal", "Synced", "Secret app written from 1 remote value(s)")


def test_an_unchanged_refresh_writes_no_status_and_posts_no_event() -> None:
    unchanged = SyncResult(Reason.SYNCED, SYNCED.message)
    report = plan_report(synced_status(), 2, unchanged, {"db": "1"}, FP, None, 3600.0, "app", NOW)
    assert report.status is None and report.event is None and not report.news


def test_a_new_failure_keeps_the_last_sync_and_warns_once() -> None:
    old = {
        **synced_status(),
        "conditions": [{**synced_status()["conditions"][0], "lastTransitionTime": LONG_AGO}],
    }
    failed = SyncResult(Reason.KUBERNETES_ERROR, "create secrets: forbidden")
    report = plan_report(old, 2, failed, {}, None, None, 3600.0, "app", NOW)
    assert report.status is not None and report.event == Event("Warning", "KubernetesError", failed.message)
    assert report.status["dataHMAC"] == FP and report.status["remoteVersions"] == {"db": "1"}
    assert report.status["syncedAt"] == old["syncedAt"]  # the Secret still holds that sync
    assert report.status["nextRefreshAt"] is None
    assert report.status["conditions"][0]["status"] == "False"
    assert report.status["conditions"][0]["lastTransitionTime"] == "2026-01-02T03:04:05Z"
    again = plan_report(report.status, 2, failed, {}, None, None, 3600.0, "app", NOW)
    assert again.status is None and again.event is None  # the same failure retried is no news


def test_an_unparsable_spec_reports_once() -> None:
    invalid = SyncResult(Reason.INVALID_SPEC, "spec.refreshInterval: not a duration")
    first = plan_invalid({}, 3, invalid, NOW)
    assert first.status is not None and first.event == Event("Warning", "InvalidSpec", invalid.message)
    assert plan_invalid(first.status, 3, invalid, NOW).status is None


@pytest.mark.parametrize(
    "error",
    [
        KubeForbidden("create secrets: forbidden"),
        KubeConflict("update secrets: conflict"),
        KubeInvalid("create secrets: rejected by the API server as invalid: metadata.labels: Invalid value"),
        KubeError("update secrets: API server answered 503 Service Unavailable"),
        KubeNotFound("get secrets: not found"),
    ],
)
def test_kubernetes_errors_have_their_own_reason(error: VaultsyncError) -> None:
    assert error.reason is Reason.KUBERNETES_ERROR
