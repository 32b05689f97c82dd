"""CronJobs and Argo Rollouts restart too, each in its own way, once per change.

A CronJob's restart is its job template's annotation (the next Jobs run the new
configuration; Jobs already running are left alone). An Argo Rollout gets `spec.restartAt`,
Argo's own restart: Argo's controller is not installed here (tests/e2e/argo/ holds a minimal
CRD), so the test reads the patch itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.e2e.workloads import AUTO_RELOAD, RESTARTED_AT, SEEN, container, pod_spec, stays
from tests.env import kube
from tests.env.kube import Cluster, KubeApi
from tests.env.waiting import eventually

pytestmark = pytest.mark.e2e

WINDOW = 2.0
QUIET = WINDOW * 3
ARGO_CRDS = Path(__file__).parent / "argo"
RELOAD_CONFIGMAPS = "vaultsync.io/reload-configmaps"


@pytest.fixture
def running(cluster: Cluster, kube_api: KubeApi, namespace: str, run_operator: Any) -> Iterator[None]:
    kube.install_crds(cluster, kube_api, ARGO_CRDS)
    with contextlib.ExitStack() as stack:
        stack.enter_context(
            run_operator(namespace, "--namespace", namespace, "--restart-window", str(WINDOW))
        )
        yield


def _cronjob(name: str, annotations: dict[str, str], config: str) -> dict[str, Any]:
    template = {
        "spec": {
            **pod_spec(container(envFrom=[{"configMapRef": {"name": config}}])),
            "restartPolicy": "Never",
        }
    }
    return {
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"schedule": "0 0 1 1 *", "suspend": True, "jobTemplate": {"spec": {"template": template}}},
    }


def _rollout(name: str, annotations: dict[str, str], config: str) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": pod_spec(container(envFrom=[{"configMapRef": {"name": config}}])),
            },
            "strategy": {"canary": {"steps": [{"setWeight": 50}]}},
        },
    }


def test_a_cronjob_and_an_argo_rollout_restart_once_per_configmap_change(
    running: None, kube_api: KubeApi, namespace: str
) -> None:
    batch = client.BatchV1Api(kube_api.client)
    custom = kube_api.custom
    kube_api.core.create_namespaced_config_map(namespace, {"metadata": {"name": "cfg"}, "data": {"k": "1"}})
    batch.create_namespaced_cron_job(namespace, _cronjob("nightly", {AUTO_RELOAD: "true"}, "cfg"))
    batch.create_namespaced_cron_job(namespace, _cronjob("bystander", {}, "cfg"))
    custom.create_namespaced_custom_object(
        "argoproj.io",
        "v1alpha1",
        namespace,
        "rollouts",
        _rollout("canary", {RELOAD_CONFIGMAPS: "cfg"}, "cfg"),
    )

    def cronjob(name: str) -> dict[str, Any]:
        body: dict[str, Any] = kube_api.client.sanitize_for_serialization(
            batch.read_namespaced_cron_job(name, namespace)
        )
        return body

    def rollout() -> dict[str, Any]:
        body: dict[str, Any] = custom.get_namespaced_custom_object(
            "argoproj.io", "v1alpha1", namespace, "rollouts", "canary"
        )
        return body

    def job_stamp(name: str) -> str | None:
        template = cronjob(name)["spec"]["jobTemplate"]["spec"]["template"]
        return ((template.get("metadata") or {}).get("annotations") or {}).get(RESTARTED_AT)

    stays(lambda: [_none(job_stamp("nightly")), _none(rollout()["spec"].get("restartAt"))], seconds=QUIET)

    kube_api.core.patch_namespaced_config_map("cfg", namespace, {"data": {"k": "2"}})
    first = eventually(lambda: _some(job_stamp("nightly")), what="the CronJob's job template to be restarted")
    restart_at = eventually(lambda: _some(rollout()["spec"].get("restartAt")), what="the Rollout's restartAt")
    versions = (cronjob("nightly")["metadata"]["resourceVersion"], rollout()["metadata"]["resourceVersion"])
    # The Rollout's template is untouched: Argo restarts its pods without a new revision.
    assert RESTARTED_AT not in (
        (rollout()["spec"]["template"].get("metadata") or {}).get("annotations") or {}
    )
    assert "configmap/cfg" in rollout()["metadata"]["annotations"][SEEN]
    stays(
        lambda: [
            _none(job_stamp("bystander")),
            _equal(job_stamp("nightly"), first),
            _equal(rollout()["spec"]["restartAt"], restart_at),
            _equal(
                (cronjob("nightly")["metadata"]["resourceVersion"], rollout()["metadata"]["resourceVersion"]),
                versions,
            ),
        ],
        seconds=QUIET,
    )


def _none(value: object) -> None:
    assert value is None, value


def _some(value: str | None) -> str:
    assert value, "not yet"
    return value


def _equal(value: object, expected: object) -> None:
    assert value == expected, f"{value!r} != {expected!r}"
