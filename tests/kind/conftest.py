"""Fixtures for the kind suite: the kind cluster, the chart's operator pod, the app image.

Overrides the root conftest's `cluster` and `kube_api` so that they talk to the kind cluster. Where
the cluster was not made (the suite run outside `make e2e-kind`), every test fails saying so.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Vaultsync
from tests.env import kube, paths, tools
from tests.env.kube import Cluster, KubeApi
from tests.kind import kindcluster
from tests.kind.kindcluster import KindCluster, KindError

# Collected when `make test` or `make e2e-kind` made the cluster and say so through
# VAULTSYNC_KIND_RUN (both create it first, and stop with kind's error if it cannot start);
# a bare `pytest tests/e2e/...` run by hand does not build a kind cluster.
if not os.environ.get("VAULTSYNC_KIND_RUN"):
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(scope="session")
def kind_cluster() -> KindCluster:
    try:
        return KindCluster.from_environment()
    except KindError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def cluster(kind_cluster: KindCluster) -> Cluster:
    found = Cluster(kubeconfig=kind_cluster.kubeconfig, kubectl=tools.tool("kubectl").current, local=False)
    try:
        found.run_kubectl("version", "--request-timeout=10s")
    except RuntimeError as exc:
        pytest.fail(f"the kind cluster does not answer: {exc}", pytrace=False)
    return found


@pytest.fixture(scope="session")
def kube_api(cluster: Cluster) -> Iterator[KubeApi]:
    """Clients for the kind cluster. Its own fixture, not the root one: a session fixture is
    cached once per definition, so under `make test` the root `kube_api` would still hold
    the clients of the local (kwok) cluster the other suites ran on."""
    api = KubeApi.from_kubeconfig(cluster.kubeconfig)
    yield api
    api.client.close()


@pytest.fixture(scope="session")
def app_namespace(kube_api: KubeApi) -> Iterator[str]:
    """The one namespace the chart's operator watches; the tests' stores and apps live here."""
    name = kube.create_namespace(kube_api, "kind-apps-")
    yield name
    kube.delete_namespace(kube_api, name)


@pytest.fixture(scope="session")
def operator_release(
    kind_cluster: KindCluster, cluster: Cluster, kube_api: KubeApi, app_namespace: str
) -> KindCluster:
    """The CRDs from crds/, then the chart installed with the operator image loaded into kind."""
    try:
        kube.install_crds(cluster, kube_api, paths.CRDS)
        kind_cluster.load(kind_cluster.operator_image)
        kindcluster.install_operator(kind_cluster, app_namespace, "--set", "installCRDs=false")
    except KindError as exc:
        pytest.fail(f"the chart could not be installed on kind: {exc}", pytrace=False)
    return kind_cluster


@pytest.fixture(scope="session")
def app_image(kind_cluster: KindCluster) -> str:
    try:
        tag = kindcluster.app_image(kind_cluster.docker)
        kind_cluster.load(tag)
    except KindError as exc:
        pytest.fail(f"the app image could not be built or loaded: {exc}", pytrace=False)
    return tag


@pytest.fixture
def vs(kube_api: KubeApi, app_namespace: str, operator_release: KindCluster) -> Vaultsync:
    return Vaultsync(kube_api, app_namespace)
