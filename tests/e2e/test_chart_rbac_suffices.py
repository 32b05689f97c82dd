"""The operator does its whole job with only the chart's RBAC, on the real API server.

tests/chart/test_chart_rbac_verbs.py proves the chart grants exactly what
`vaultsync.access` lists; this proves the list is complete in practice: the operator
process runs as the chart's ServiceAccount (a token, no admin kubeconfig) and syncs from
a ClusterSecretStore behind a namespaceSelector, writes Events and status, and restarts a
Deployment on rotation, without a single refusal in its log; two replicas elect a leader
on the Lease with the chart's leader election Role alone. No image is needed (the image tests prove the
same for the container).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import GROUP, VERSION, Vaultsync, fake_entry
from tests.e2e.workloads import RELOAD, Workloads, container, deployment, env_from_key, pod_spec
from tests.env import kube
from tests.env.kube import Cluster, KubeApi
from tests.image.test_image_operator import ChartRbac, lease_args

pytestmark = pytest.mark.e2e

FORCE_SYNC = "vaultsync.io/force-sync"
REFUSALS = ("forbidden", "Forbidden", "Not enough permissions")


@pytest.fixture
def app_namespace(kube_api: KubeApi) -> Iterator[str]:
    name = kube.create_namespace(kube_api, prefix="vs-test-app-")
    yield name
    kube.delete_namespace(kube_api, name)


@pytest.fixture
def chart_rbac(cluster: Cluster, tmp_path: Path) -> Iterator[ChartRbac]:
    rbac = ChartRbac(cluster, tmp_path)
    yield rbac
    rbac.remove()


def _ours(lines: list[str], *namespaces: str) -> list[str]:
    """Lines not about another test's namespace: a cluster-wide operator also sees objects of
    namespaces that earlier tests are still deleting, where the API server refuses every
    create (an Event, say) with 403 whatever the RBAC."""
    others = re.compile(r"vs-test-[a-z0-9-]+")
    return [line for line in lines if set(others.findall(line)) <= set(namespaces)]


def _store(data: str) -> list[dict[str, str]]:
    return [fake_entry("db", {"password": data})]


@pytest.mark.parametrize("mode", ["namespaced", "cluster"])
def test_the_operator_syncs_and_restarts_with_only_the_charts_rbac(
    mode: str,
    kube_api: KubeApi,
    install_crds: list[str],
    namespace: str,
    app_namespace: str,
    chart_rbac: ChartRbac,
    run_operator: Callable[..., Any],
) -> None:
    values: dict[str, Any] = {"watchNamespaces": [app_namespace]} if mode == "namespaced" else {}
    rbac = chart_rbac.apply(values, namespace)
    account = next(m for m in rbac if m["kind"] == "ServiceAccount")
    kubeconfig = chart_rbac.kubeconfig(account)
    args = ["--namespace", app_namespace] if mode == "namespaced" else []
    args += lease_args(rbac)
    vs = Vaultsync(kube_api, app_namespace)
    workloads = Workloads(kube_api, app_namespace)
    css = f"css-{app_namespace}"
    selector = {"matchLabels": {"kubernetes.io/metadata.name": app_namespace}}
    try:
        with run_operator(namespace, *args, env={"KUBECONFIG": str(kubeconfig)}) as operator:
            vs.fake_store(
                css, _store("from-cluster"), cluster=True, conditions=[{"namespaceSelector": selector}]
            )
            vs.external_secret(
                "shared",
                {
                    "storeRef": {"name": css, "kind": "ClusterSecretStore"},
                    "data": [{"secretKey": "password", "remoteRef": {"key": "db", "property": "password"}}],
                },
            )
            vs.fake_store("fake", _store("v1"))
            vs.external_secret(
                "db-creds",
                {
                    "storeRef": {"name": "fake"},
                    "data": [{"secretKey": "password", "remoteRef": {"key": "db", "property": "password"}}],
                },
            )
            vs.wait_data("shared", {"password": "from-cluster"})
            vs.wait_data("db-creds", {"password": "v1"})
            workloads.create(
                deployment(
                    "web",
                    annotations={RELOAD: "db-creds"},
                    spec=pod_spec(container(**env_from_key("db-creds", "password"))),
                )
            )
            vs.patch_store("fake", {"spec": {"provider": {"fake": {"data": _store("v2")}}}})
            vs.wait_store_ready("fake")
            vs.patch_external_secret(
                "db-creds", {"metadata": {"annotations": {FORCE_SYNC: str(time.time_ns())}}}
            )
            vs.wait_data("db-creds", {"password": "v2"})
            workloads.wait_templates("Deployment", "web", 2, timeout=90)
            assert vs.events("db-creds"), "no Event was posted"
            logs = operator.logs()
        refused = [line for line in logs.splitlines() if any(r in line for r in REFUSALS)]
        assert not _ours(refused, namespace, app_namespace), "\n".join(refused)
    finally:
        kube_api.custom.delete_cluster_custom_object(GROUP, VERSION, "clustersecretstores", css)


def test_two_replicas_elect_a_leader_with_only_the_charts_rbac(
    kube_api: KubeApi,
    install_crds: list[str],
    namespace: str,
    app_namespace: str,
    chart_rbac: ChartRbac,
    run_operator: Callable[..., Any],
) -> None:
    """The Lease needs create, and get/update on its one name, in the release namespace."""
    objects = chart_rbac.apply({"replicaCount": 2, "watchNamespaces": [app_namespace]}, namespace)
    account = next(m for m in objects if m["kind"] == "ServiceAccount")
    env = {"KUBECONFIG": str(chart_rbac.kubeconfig(account))}
    args = ["--namespace", app_namespace, *lease_args(objects)]
    vs = Vaultsync(kube_api, app_namespace)

    with run_operator(namespace, *args, env=env) as first, run_operator(namespace, *args, env=env) as second:
        vs.fake_store("fake", _store("v1"))
        vs.external_secret(
            "db-creds",
            {
                "storeRef": {"name": "fake"},
                "data": [{"secretKey": "password", "remoteRef": {"key": "db", "property": "password"}}],
            },
        )
        vs.wait_data("db-creds", {"password": "v1"})
        logs = first.logs() + second.logs()
        assert logs.count("acquired the Lease") == 1, "not exactly one leader"
    refused = [line for line in logs.splitlines() if any(r in line for r in REFUSALS)]
    assert not refused, "\n".join(refused)
