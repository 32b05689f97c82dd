"""Which workloads a rotated Secret restarts, and the one idempotent patch that restarts each of them."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from vaultsync import constants as c
from vaultsync.fingerprints import combined
from vaultsync.kube import ObjectRef
from vaultsync.rollout import (
    Rotation,
    referenced_secrets,
    restart_budget,
    restart_patch,
    seen_fingerprints,
    watched_secrets,
)

KEY = b"k" * 32
NOW = datetime(2026, 11, 26, 8, 30, 15, tzinfo=UTC)
ES = ObjectRef(c.API_VERSION, c.KIND_EXTERNAL_SECRET, "shop", "db-creds", "uid-es")
FP_DB = "hmac-sha256:" + "a" * 64
FP_DB_NEW = "hmac-sha256:" + "b" * 64
FP_API = "hmac-sha256:" + "c" * 64

POD_TEMPLATE: dict[str, Any] = {
    "metadata": {"labels": {"app": "shop"}},
    "spec": {
        "initContainers": [
            {"name": "migrate", "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "init-env"}}}]}
        ],
        "containers": [
            {
                "name": "app",
                "env": [
                    {"name": "PLAIN", "value": "x"},
                    {
                        "name": "FROM_CM",
                        "valueFrom": {"configMapKeyRef": {"name": "a-configmap", "key": "k"}},
                    },
                    {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "pw"}}},
                ],
                "envFrom": [{"secretRef": {"name": "envfrom-secret"}}, {"configMapRef": {"name": "cm2"}}],
            },
            {"name": "sidecar", "envFrom": [{"prefix": "X_", "secretRef": {"name": "sidecar-secret"}}]},
        ],
        "volumes": [
            {"name": "v1", "secret": {"secretName": "volume-secret"}},
            {"name": "v2", "configMap": {"name": "cm3"}},
            {"name": "v3", "emptyDir": {}},
            {
                "name": "v4",
                "projected": {
                    "sources": [
                        {"secret": {"name": "projected-secret"}},
                        {"configMap": {"name": "cm4"}},
                        {"serviceAccountToken": {"path": "token"}},
                    ]
                },
            },
        ],
    },
}
ALL_REFERENCED = {
    "init-env",
    "env-secret",
    "envfrom-secret",
    "sidecar-secret",
    "volume-secret",
    "projected-secret",
}
ALL_CONFIGMAPS = {"configmap/a-configmap", "configmap/cm2", "configmap/cm3", "configmap/cm4"}


def workload(
    annotations: dict[str, str] | None = None, template: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "metadata": {"name": "shop", "namespace": "shop", "uid": "uid-w", "annotations": annotations or {}},
        "spec": {"template": template if template is not None else POD_TEMPLATE},
    }


def rotations(fingerprints: dict[str, str]) -> dict[str, Rotation]:
    return {name: Rotation(name, fp, ES) for name, fp in fingerprints.items()}


def seen(*pairs: tuple[str, str]) -> str:
    return json.dumps(dict(pairs))


def test_every_way_a_pod_reads_a_secret_is_found() -> None:
    assert referenced_secrets(POD_TEMPLATE) == ALL_REFERENCED


def test_a_pod_template_without_secrets_references_none() -> None:
    assert referenced_secrets({}) == set()
    assert (
        referenced_secrets({"spec": {"containers": [{"name": "a", "env": None, "envFrom": None}]}}) == set()
    )


def test_the_reload_annotation_lists_the_secrets_to_watch() -> None:
    assert watched_secrets(workload({c.ANNOTATION_RELOAD: "db-creds, api-keys ,,"})) == {
        "db-creds",
        "api-keys",
    }


def test_auto_reload_watches_every_secret_and_configmap_the_pod_template_reads() -> None:
    assert watched_secrets(workload({c.ANNOTATION_AUTO_RELOAD: "true"})) == ALL_REFERENCED | ALL_CONFIGMAPS
    assert watched_secrets(workload({c.ANNOTATION_AUTO_RELOAD: "True"})) == ALL_REFERENCED | ALL_CONFIGMAPS


def test_auto_reload_and_a_reload_list_add_up() -> None:
    annotations = {c.ANNOTATION_AUTO_RELOAD: "true", c.ANNOTATION_RELOAD: "elsewhere"}
    assert watched_secrets(workload(annotations)) == ALL_REFERENCED | ALL_CONFIGMAPS | {"elsewhere"}


@pytest.mark.parametrize(
    "annotations", [{}, {c.ANNOTATION_AUTO_RELOAD: "false"}, {"other.io/reload": "db-creds"}]
)
def test_a_workload_that_did_not_opt_in_watches_nothing(annotations: dict[str, str]) -> None:
    assert watched_secrets(workload(annotations)) == set()


def test_seen_fingerprints_are_read_from_the_workload_metadata() -> None:
    assert seen_fingerprints(workload({c.ANNOTATION_SEEN_FINGERPRINTS: seen(("db-creds", FP_DB))})) == {
        "db-creds": FP_DB
    }


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", '"x"'])
def test_unreadable_seen_fingerprints_count_as_none_seen(raw: str) -> None:
    assert seen_fingerprints(workload({c.ANNOTATION_SEEN_FINGERPRINTS: raw})) == {}


def test_a_rotation_of_a_watched_secret_produces_one_patch() -> None:
    planned = restart_patch(
        workload({c.ANNOTATION_RELOAD: "db-creds"}), rotations({"db-creds": FP_DB}), KEY, NOW
    )
    assert planned is not None
    patch, causes = planned
    assert causes == ["db-creds"]
    assert (
        patch["spec"]["template"]["metadata"]["annotations"][c.ANNOTATION_RESTARTED_AT]
        == "2026-11-26T08:30:15Z"
    )
    assert json.loads(patch["metadata"]["annotations"][c.ANNOTATION_SEEN_FINGERPRINTS]) == {"db-creds": FP_DB}


def test_the_patch_touches_only_the_workload_annotations_and_the_pod_template_annotations() -> None:
    planned = restart_patch(
        workload({c.ANNOTATION_RELOAD: "db-creds"}), rotations({"db-creds": FP_DB}), KEY, NOW
    )
    assert planned is not None
    patch, _ = planned
    assert set(patch) == {"metadata", "spec"}
    assert set(patch["metadata"]) == {"annotations"}
    assert set(patch["metadata"]["annotations"]) == {c.ANNOTATION_SEEN_FINGERPRINTS}
    assert set(patch["spec"]) == {"template"}
    assert set(patch["spec"]["template"]) == {"metadata"}
    assert set(patch["spec"]["template"]["metadata"]) == {"annotations"}
    assert set(patch["spec"]["template"]["metadata"]["annotations"]) == {
        c.ANNOTATION_RESTARTED_AT,
        c.ANNOTATION_RESTART_FINGERPRINT,
    }


def test_several_rotated_secrets_make_one_patch_naming_them_all() -> None:
    w = workload({c.ANNOTATION_RELOAD: "db-creds,api-keys"})
    planned = restart_patch(w, rotations({"db-creds": FP_DB, "api-keys": FP_API}), KEY, NOW)
    assert planned is not None
    patch, causes = planned
    assert causes == ["api-keys", "db-creds"]
    assert json.loads(patch["metadata"]["annotations"][c.ANNOTATION_SEEN_FINGERPRINTS]) == {
        "db-creds": FP_DB,
        "api-keys": FP_API,
    }


def test_no_patch_when_the_fingerprint_was_already_seen() -> None:
    w = workload({c.ANNOTATION_RELOAD: "db-creds", c.ANNOTATION_SEEN_FINGERPRINTS: seen(("db-creds", FP_DB))})
    assert restart_patch(w, rotations({"db-creds": FP_DB}), KEY, NOW) is None


def test_a_repeated_notification_after_the_patch_is_a_no_op() -> None:
    w = workload({c.ANNOTATION_RELOAD: "db-creds"})
    planned = restart_patch(w, rotations({"db-creds": FP_DB}), KEY, NOW)
    assert planned is not None
    w["metadata"]["annotations"].update(planned[0]["metadata"]["annotations"])
    assert restart_patch(w, rotations({"db-creds": FP_DB}), KEY, NOW) is None


def test_no_patch_for_a_workload_that_did_not_opt_in() -> None:
    assert restart_patch(workload({}), rotations({"env-secret": FP_DB}), KEY, NOW) is None


def test_no_patch_for_a_secret_the_workload_does_not_watch() -> None:
    w = workload({c.ANNOTATION_RELOAD: "db-creds"})
    assert restart_patch(w, rotations({"api-keys": FP_API}), KEY, NOW) is None


def test_only_the_unseen_rotations_cause_a_restart() -> None:
    w = workload(
        {c.ANNOTATION_RELOAD: "db-creds,api-keys", c.ANNOTATION_SEEN_FINGERPRINTS: seen(("api-keys", FP_API))}
    )
    planned = restart_patch(w, rotations({"db-creds": FP_DB, "api-keys": FP_API}), KEY, NOW)
    assert planned is not None
    assert planned[1] == ["db-creds"]


def test_a_new_fingerprint_of_a_seen_secret_restarts_again() -> None:
    w = workload({c.ANNOTATION_RELOAD: "db-creds", c.ANNOTATION_SEEN_FINGERPRINTS: seen(("db-creds", FP_DB))})
    planned = restart_patch(w, rotations({"db-creds": FP_DB_NEW}), KEY, NOW)
    assert planned is not None
    assert json.loads(planned[0]["metadata"]["annotations"][c.ANNOTATION_SEEN_FINGERPRINTS]) == {
        "db-creds": FP_DB_NEW
    }


def test_the_restart_fingerprint_is_an_hmac_of_everything_seen_not_the_data_fingerprints() -> None:
    w = workload(
        {c.ANNOTATION_RELOAD: "db-creds,api-keys", c.ANNOTATION_SEEN_FINGERPRINTS: seen(("api-keys", FP_API))}
    )
    planned = restart_patch(w, rotations({"db-creds": FP_DB}), KEY, NOW)
    assert planned is not None
    marker = planned[0]["spec"]["template"]["metadata"]["annotations"][c.ANNOTATION_RESTART_FINGERPRINT]
    assert marker == combined({"db-creds": FP_DB, "api-keys": FP_API}, KEY)
    assert marker != combined({"db-creds": FP_DB, "api-keys": FP_API}, b"another key")
    assert marker not in FP_DB + FP_API


def test_auto_reload_restarts_for_a_secret_mounted_as_a_projected_volume() -> None:
    planned = restart_patch(
        workload({c.ANNOTATION_AUTO_RELOAD: "true"}), rotations({"projected-secret": FP_DB}), KEY, NOW
    )
    assert planned is not None
    assert planned[1] == ["projected-secret"]


def test_the_restart_rate_limit_lets_the_allowance_through_and_makes_the_excess_wait() -> None:
    async def scenario() -> None:
        limit = restart_budget(per_minute=3)
        for _ in range(3):
            await asyncio.wait_for(limit.acquire(), timeout=1)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(limit.acquire(), timeout=0.05)

    asyncio.run(scenario())


def test_a_restart_rate_limit_of_zero_still_lets_one_restart_a_minute_through() -> None:
    async def scenario() -> None:
        limit = restart_budget(per_minute=0)
        await asyncio.wait_for(limit.acquire(), timeout=1)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(limit.acquire(), timeout=0.05)

    asyncio.run(scenario())
