"""Real containers on a real kind cluster read what the chart's operator pod syncs.

The kwok suites simulate pods; here the kubelet runs them. Each app pod (tests/kind/app)
reports the Secret's value it got as an environment variable at start and the value of the
mounted file now, over HTTP through the API server's pod proxy. A rotation must update the
mounted file in place in every pod (the kubelet's projection, no restart), roll the
Deployment that opted in (new pods serve the new value, old pods are gone) and leave the one
that did not opt in alone. The operator pod is killed and upgraded with helm while rotations
happen; each rotation still restarts the opted-in Deployment exactly once.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e.conftest import Vaultsync, fake_entry
from tests.e2e.workloads import Workloads, stays
from tests.env.kube import KubeApi
from tests.env.waiting import eventually
from tests.kind import kindcluster
from tests.kind.kindcluster import RELEASE_NAMESPACE, KindCluster

SECRET = "app-secret"
KEY = "app/db"
AUTO_RELOAD = "vaultsync.io/auto-reload"
FORCE_SYNC = "vaultsync.io/force-sync"
MOUNT = "/etc/app-secret"
# The kubelet re-projects a mounted Secret on its sync period (about a minute) plus its cache TTL.
PROJECTION_TIMEOUT = 240.0
ROLLOUT_TIMEOUT = 300.0
QUIET_SECONDS = 20.0


def app_deployment(name: str, image: str, *, opted_in: bool, replicas: int = 2) -> dict[str, Any]:
    """The app reading SECRET's `password` as $SECRET_VALUE and as the file MOUNT/password."""
    annotations = {AUTO_RELOAD: "true"} if opted_in else {}
    container = {
        "name": "app",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"containerPort": 8080}],
        "env": [
            {"name": "SECRET_VALUE", "valueFrom": {"secretKeyRef": {"name": SECRET, "key": "password"}}},
            {"name": "SECRET_FILE", "value": f"{MOUNT}/password"},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        "volumeMounts": [{"name": "secret", "mountPath": MOUNT, "readOnly": True}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 2},
        "securityContext": {
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [container],
                    "volumes": [{"name": "secret", "secret": {"secretName": SECRET}}],
                    "terminationGracePeriodSeconds": 2,
                },
            },
        },
    }


@dataclass
class Apps:
    """The store, the ExternalSecret and the two app Deployments of one test."""

    vs: Vaultsync
    api: KubeApi
    workloads: Workloads
    version: int = 1

    @property
    def value(self) -> str:
        return f"value-{self.version}"

    def rotate(self) -> str:
        """A new version in the store, then an immediate re-read; returns the new value."""
        self.version += 1
        entries = [fake_entry(KEY, {"password": f"value-{v}"}, str(v)) for v in range(1, self.version + 1)]
        self.vs.patch_store("fake", {"spec": {"provider": {"fake": {"data": entries}}}})

        def observed() -> None:
            store = self.vs.api.custom.get_namespaced_custom_object(
                "vaultsync.io", "v1alpha1", self.vs.namespace, "secretstores", "fake"
            )
            assert (store.get("status") or {}).get("observedGeneration") == store["metadata"]["generation"]

        eventually(observed, what="the operator to see the store's new generation", timeout=120)
        self.vs.patch_external_secret(
            SECRET, {"metadata": {"annotations": {FORCE_SYNC: str(time.time_ns())}}}
        )
        self.vs.wait_data(SECRET, {"password": self.value})
        return self.value

    def pods(self, name: str) -> list[Any]:
        """The Deployment's pods that are not being deleted (a pod gets its IP once it runs)."""
        found = self.api.core.list_namespaced_pod(self.vs.namespace, label_selector=f"app={name}")
        return [p for p in found.items if p.metadata.deletion_timestamp is None]

    def running(self, name: str) -> list[Any]:
        return [p for p in self.pods(name) if p.status.pod_ip]

    def report(self, pod: str) -> dict[str, str]:
        """What the app in `pod` reports, fetched through the API server's pod proxy."""
        raw = self.api.core.connect_get_namespaced_pod_proxy_with_path(
            f"{pod}:8080", self.vs.namespace, "", _preload_content=False
        )
        body: dict[str, str] = json.loads(raw.data)
        return body

    def reports(self, name: str) -> dict[str, dict[str, str]]:
        return {pod.metadata.name: self.report(pod.metadata.name) for pod in self.running(name)}

    def wait_serving(self, name: str, *, env: str, file: str, replicas: int = 2) -> dict[str, dict[str, str]]:
        """Every pod of `name` (exactly `replicas`, all Ready) reports these values."""

        def check() -> dict[str, dict[str, str]]:
            pods = self.pods(name)
            assert len(pods) == replicas, f"{name}: {[p.metadata.name for p in pods]}"
            for pod in pods:
                ready = {c.type: c.status for c in (pod.status.conditions or [])}.get("Ready")
                assert ready == "True", f"{pod.metadata.name} not Ready"
            found = self.reports(name)
            for pod, report in found.items():
                assert (report["env"], report["file"]) == (env, file), f"{pod}: {report}"
            return found

        return eventually(check, what=f"{name} to serve env={env} file={file}", timeout=ROLLOUT_TIMEOUT)

    def restart_counts(self, name: str) -> dict[str, int]:
        return {
            p.metadata.name: sum(c.restart_count for c in (p.status.container_statuses or []))
            for p in self.pods(name)
        }


@pytest.fixture
def apps(vs: Vaultsync, kube_api: KubeApi, app_image: str) -> Iterator[Apps]:
    """The fake store at version 1, the ExternalSecret, and the two Deployments rolled out."""
    vs.fake_store("fake", [fake_entry(KEY, {"password": "value-1"}, "1")])
    vs.external_secret(
        SECRET,
        {
            "storeRef": {"name": "fake"},
            "refreshInterval": "0",
            "data": [{"secretKey": "password", "remoteRef": {"key": KEY, "property": "password"}}],
        },
    )
    vs.wait_data(SECRET, {"password": "value-1"})
    workloads = Workloads(kube_api, vs.namespace)
    workloads.create(app_deployment("reader", app_image, opted_in=True))
    workloads.create(app_deployment("bystander", app_image, opted_in=False))
    found = Apps(vs, kube_api, workloads)
    found.wait_serving("reader", env="value-1", file="value-1")
    found.wait_serving("bystander", env="value-1", file="value-1")
    yield found
    for name in ("reader", "bystander"):
        kube_api.apps.delete_namespaced_deployment(name, vs.namespace)
    for plural, name in (("externalsecrets", SECRET), ("secretstores", "fake")):
        kube_api.custom.delete_namespaced_custom_object(
            "vaultsync.io", "v1alpha1", vs.namespace, plural, name
        )
    eventually(lambda: _all_gone(kube_api, vs.namespace), what="the test's objects to be gone", timeout=120)


def _all_gone(api: KubeApi, namespace: str) -> None:
    for plural, name in (("externalsecrets", SECRET), ("secretstores", "fake")):
        found = api.custom.list_namespaced_custom_object("vaultsync.io", "v1alpha1", namespace, plural)
        assert not [i for i in found["items"] if i["metadata"]["name"] == name], f"{plural}/{name}"
    names = [d.metadata.name for d in api.apps.list_namespaced_deployment(namespace).items]
    assert not names, names
    secrets = [s.metadata.name for s in api.core.list_namespaced_secret(namespace).items]
    assert SECRET not in secrets, secrets


def operator_pods(api: KubeApi) -> list[Any]:
    found = api.core.list_namespaced_pod(RELEASE_NAMESPACE, label_selector="app.kubernetes.io/name=vaultsync")
    return [p for p in found.items if p.metadata.deletion_timestamp is None]


def test_the_operator_runs_as_the_charts_pod(kube_api: KubeApi, operator_release: KindCluster) -> None:
    """In-cluster config, the chart's ServiceAccount token, probes passing, read-only root."""
    (pod,) = operator_pods(kube_api)
    assert pod.spec.service_account_name == "vaultsync"
    (container,) = pod.spec.containers
    assert container.security_context.read_only_root_filesystem is True
    assert container.readiness_probe is not None and container.liveness_probe is not None
    assert not any(e.name == "KUBECONFIG" for e in (container.env or []))
    mounts = {m.mount_path for m in container.volume_mounts or []}
    assert "/var/run/secrets/kubernetes.io/serviceaccount" in mounts
    ready = {c.type: c.status for c in pod.status.conditions}
    assert ready["Ready"] == "True", pod.status
    assert pod.status.container_statuses[0].restart_count == 0


def test_a_rotation_updates_files_in_place_and_rolls_only_the_opted_in_deployment(apps: Apps) -> None:
    before_reader = apps.wait_serving("reader", env="value-1", file="value-1")
    before_bystander = apps.wait_serving("bystander", env="value-1", file="value-1")
    bystander_generation = apps.workloads.get("Deployment", "bystander")["metadata"]["generation"]
    reader_templates = apps.workloads.templates("Deployment", "reader")

    new = apps.rotate()

    # The bystander's pods stay: same pods, no restart, the file changed under them.
    after_bystander = eventually(
        lambda: _all_files(apps, "bystander", new),
        what="the kubelet to project the new value into the bystander's mounted file",
        timeout=PROJECTION_TIMEOUT,
    )
    assert set(after_bystander) == set(before_bystander)
    for pod, report in after_bystander.items():
        assert report["env"] == "value-1", f"{pod} env changed without a restart: {report}"
        assert report["started"] == before_bystander[pod]["started"], f"{pod} restarted"
    assert set(apps.restart_counts("bystander").values()) == {0}
    assert apps.workloads.get("Deployment", "bystander")["metadata"]["generation"] == bystander_generation

    # The reader was rolled: new pods with the new value in env and file; the old ones gone.
    after_reader = apps.wait_serving("reader", env=new, file=new)
    assert not set(after_reader) & set(before_reader), "old reader pods still serve"
    assert apps.workloads.templates("Deployment", "reader") == reader_templates + 1


def _all_files(apps: Apps, name: str, value: str) -> dict[str, dict[str, str]]:
    found = apps.reports(name)
    assert found and all(r["file"] == value for r in found.values()), found
    return found


def test_a_killed_operator_pod_is_replaced_and_restarts_nothing_twice(apps: Apps, kube_api: KubeApi) -> None:
    (old,) = operator_pods(kube_api)
    templates = apps.workloads.templates("Deployment", "reader")
    kube_api.core.delete_namespaced_pod(old.metadata.name, RELEASE_NAMESPACE, grace_period_seconds=0)

    def replaced() -> None:
        pods = operator_pods(kube_api)
        assert [p.metadata.name for p in pods] != [old.metadata.name] and len(pods) == 1, pods
        ready = {c.type: c.status for c in pods[0].status.conditions or []}
        assert ready.get("Ready") == "True"

    eventually(replaced, what="a new operator pod to be Ready", timeout=ROLLOUT_TIMEOUT)
    new = apps.rotate()
    apps.wait_serving("reader", env=new, file=new)
    apps.workloads.wait_templates("Deployment", "reader", templates + 1, timeout=ROLLOUT_TIMEOUT)
    stays(
        lambda: _assert_templates(apps, templates + 1),
        seconds=QUIET_SECONDS,
        interval=2.0,
    )


def _assert_templates(apps: Apps, count: int) -> None:
    found = apps.workloads.templates("Deployment", "reader")
    assert found == count, f"reader has {found} ReplicaSets, expected {count}: a duplicate restart"


def test_helm_upgrade_of_the_operator_while_rotations_happen(
    apps: Apps, operator_release: KindCluster, app_namespace: str
) -> None:
    templates = apps.workloads.templates("Deployment", "reader")
    upgrade = subprocess.Popen(
        [
            str(kindcluster.tools.tool("helm").current),
            "--kubeconfig",
            str(operator_release.kubeconfig),
            "upgrade",
            kindcluster.RELEASE,
            str(kindcluster.CHART),
            "--namespace",
            RELEASE_NAMESPACE,
            "--reuse-values",
            "--set-string",
            f"podAnnotations.upgraded-at={time.time_ns()}",
            "--wait",
            "--timeout",
            "300s",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        rotations = [apps.rotate(), apps.rotate()]
    finally:
        output, _ = upgrade.communicate(timeout=400)
    assert upgrade.returncode == 0, output
    final = rotations[-1]
    apps.wait_serving("reader", env=final, file=final)
    count = apps.workloads.templates("Deployment", "reader")
    assert templates + 1 <= count <= templates + len(rotations), f"{count - templates} restarts"
    stays(lambda: _assert_templates(apps, count), seconds=QUIET_SECONDS, interval=2.0)
