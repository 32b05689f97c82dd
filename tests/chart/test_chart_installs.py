"""The chart installs into a real API server, rolls out the operator, and uninstalls cleanly.

Every object of every value set must pass the API server's own validation (a server-side
dry run); a real `helm install` must bring the Deployment to Available; `helm uninstall`
must leave nothing behind but the CRDs it keeps. On the local kwok cluster pods are
simulated, so "Available" proves the manifests are valid and schedulable; the image
itself is proven by tests/image.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.chart.helm import (
    CHART,
    Manifest,
    adopt_existing_crds,
    find,
    render,
    run_helm,
    value_sets,
    values_file,
)
from tests.env import kube
from tests.env.kube import Cluster, KubeApi
from tests.env.waiting import eventually

pytestmark = pytest.mark.e2e

VALUE_SET_NAMES = list(value_sets([]))


@pytest.fixture
def second_namespace(kube_api: KubeApi) -> Iterator[str]:
    """Another fresh namespace, so that namespaced mode watches more than one."""
    name = kube.create_namespace(kube_api, prefix="vs-test-")
    yield name
    kube.delete_namespace(kube_api, name)


def _release(namespace: str) -> str:
    """A release name as unique as the test's namespace: cluster-scoped names derive from it."""
    return namespace


def _existing_crds(cluster: Cluster) -> set[str]:
    names = cluster.run_kubectl("get", "crd", "-o", "jsonpath={.items[*].metadata.name}")
    return set(names.split())


def _missing_crds(cluster: Cluster, crds: list[Manifest]) -> list[Manifest]:
    existing = _existing_crds(cluster)
    return [crd for crd in crds if crd["metadata"]["name"] not in existing]


@pytest.mark.parametrize("name", VALUE_SET_NAMES)
def test_every_rendered_object_passes_a_server_side_dry_run(
    name: str,
    cluster: Cluster,
    namespace: str,
    second_namespace: str,
    tmp_path: Path,
) -> None:
    values = value_sets([namespace, second_namespace])[name]
    manifests = render(values, tmp_path, release=_release(namespace), namespace=namespace)
    crds = find(manifests, "CustomResourceDefinition")
    others = [m for m in manifests if m["kind"] != "CustomResourceDefinition"]

    # Objects of a kind the chart itself defines can only be checked once the kind exists.
    missing = _missing_crds(cluster, crds)
    created = tmp_path / "missing-crds.yaml"
    created.write_text(yaml.safe_dump_all(missing))
    if missing:
        cluster.run_kubectl("apply", "--server-side", "-f", str(created))
        cluster.run_kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(created))
    try:
        for batch, objects in (("crds", crds), ("objects", others)):
            if not objects:
                continue
            path = tmp_path / f"{batch}.yaml"
            path.write_text(yaml.safe_dump_all(objects))
            cluster.run_kubectl(
                "apply",
                "--dry-run=server",
                "--server-side",
                "--force-conflicts",
                "--field-manager=vaultsync-chart-test",
                "-f",
                str(path),
            )
    finally:
        # vaultsync's own CRDs stay: the rest of the suite installs the very same ones, and
        # deleting a CRD whose watch cache is still initialising can take minutes.
        foreign = [crd for crd in missing if crd["spec"]["group"] != "vaultsync.io"]
        if foreign:
            created.write_text(yaml.safe_dump_all(foreign))
            cluster.run_kubectl("delete", "--ignore-not-found", "--timeout=180s", "-f", str(created))


@pytest.mark.parametrize("name", ["default", "namespaced", "ha"])
def test_install_rolls_out_the_operator_and_uninstall_leaves_only_the_crds(
    name: str,
    cluster: Cluster,
    kube_api: KubeApi,
    namespace: str,
    second_namespace: str,
    tmp_path: Path,
) -> None:
    release = _release(namespace)
    values = {**value_sets([namespace, second_namespace])[name], "image": {"tag": "dev"}}
    manifests = render(values, tmp_path, release=release, namespace=namespace)
    adopt_existing_crds(cluster, manifests, release, namespace)
    installed = False
    try:
        run_helm(
            "install",
            release,
            str(CHART),
            "--namespace",
            namespace,
            "--values",
            str(values_file(values, tmp_path)),
            "--wait",
            "--timeout",
            "180s",
            kubeconfig=cluster.kubeconfig,
        )
        installed = True
        deployment = kube_api.apps.read_namespaced_deployment(f"{release}-vaultsync", namespace)
        conditions = {c.type: c.status for c in deployment.status.conditions or []}
        assert conditions.get("Available") == "True", conditions
        assert deployment.status.available_replicas == deployment.spec.replicas

        run_helm("uninstall", release, "--namespace", namespace, "--wait", kubeconfig=cluster.kubeconfig)
        installed = False
        eventually(
            lambda: _assert_nothing_left(cluster, release),
            what=f"every object of {release} but the CRDs to be gone",
            timeout=60,
        )
        for crd in find(manifests, "CustomResourceDefinition"):
            if crd["metadata"]["name"].endswith(".vaultsync.io"):
                cluster.run_kubectl("get", "crd", crd["metadata"]["name"])
    finally:
        if installed:
            run_helm("uninstall", release, "--namespace", namespace, kubeconfig=cluster.kubeconfig)


def _assert_nothing_left(cluster: Cluster, release: str) -> None:
    """No object labelled as part of the release is left, except the CRDs it keeps."""
    kinds = (
        "deployments,replicasets,pods,services,serviceaccounts,roles,rolebindings,"
        "poddisruptionbudgets,clusterroles,clusterrolebindings,customresourcedefinitions"
    )
    found = cluster.run_kubectl(
        "get",
        kinds,
        "--all-namespaces",
        "-l",
        f"app.kubernetes.io/instance={release}",
        "-o",
        "name",
    ).split()
    left = [
        name
        for name in found
        if not (name.startswith("customresourcedefinition") and name.endswith(".vaultsync.io"))
    ]
    assert left == []
