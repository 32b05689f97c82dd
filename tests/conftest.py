"""Fixtures that give end-to-end tests a real cluster, a namespace, the CRDs and the operator.

The cluster is the local kwokctl one (`make cluster-up`), started here if it is not running,
or whichever cluster VAULTSYNC_TEST_KUBECONFIG points at (a kind cluster, say). A cluster
that cannot be reached fails the tests with the reason; it never skips them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.env import cluster as local_cluster
from tests.env import kube, paths, tools
from tests.env.kube import Cluster, KubeApi
from tests.env.operator import OperatorProcess, RunOperator

EXTERNAL_KUBECONFIG = "VAULTSYNC_TEST_KUBECONFIG"


def _external_cluster(kubeconfig: Path) -> Cluster:
    if not kubeconfig.is_file():
        pytest.fail(f"{EXTERNAL_KUBECONFIG}={kubeconfig} is not a file", pytrace=False)
    ours = tools.tool("kubectl").current
    found = ours if ours.is_file() else shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl is needed on PATH (or run `make tools`)", pytrace=False)
    return Cluster(kubeconfig=kubeconfig, kubectl=Path(found), local=False)


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    """The cluster under test, reachable and answering /version."""
    external = os.environ.get(EXTERNAL_KUBECONFIG)
    if external:
        found = _external_cluster(Path(external))
    else:
        try:
            kubeconfig = local_cluster.up()
        except (tools.BuildError, local_cluster.ClusterError) as exc:
            pytest.fail(f"the local test cluster could not start: {exc}", pytrace=False)
        found = Cluster(kubeconfig=kubeconfig, kubectl=tools.tool("kubectl").current, local=True)
    try:
        found.run_kubectl("version", "--request-timeout=10s")
    except RuntimeError as exc:
        pytest.fail(f"the cluster at {found.kubeconfig} does not answer: {exc}", pytrace=False)
    return found


@pytest.fixture(scope="session")
def kube_api(cluster: Cluster) -> Iterator[KubeApi]:
    """Kubernetes clients authenticated as the kubeconfig's (admin) user."""
    api = KubeApi.from_kubeconfig(cluster.kubeconfig)
    yield api
    api.client.close()


@pytest.fixture
def namespace(kube_api: KubeApi) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards."""
    name = kube.create_namespace(kube_api, prefix="vs-test-")
    yield name
    kube.delete_namespace(kube_api, name)


@pytest.fixture
def other_namespace(kube_api: KubeApi) -> Iterator[str]:
    """A second fresh namespace, for tests of what must not cross from one to another."""
    name = kube.create_namespace(kube_api, prefix="vs-test-other-")
    yield name
    kube.delete_namespace(kube_api, name)


@pytest.fixture(scope="session")
def install_crds(cluster: Cluster, kube_api: KubeApi) -> list[str]:
    """Every CRD in crds/, applied server-side and Established; returns their names."""
    return kube.install_crds(cluster, kube_api, paths.CRDS)


OPERATORS_OF_TEST = pytest.StashKey[list[OperatorProcess]]()
LOG_LINES_SHOWN = 80


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """A failed test shows the end of each operator log it started, however the operator
    was started (a fixture's ExitStack never sees the test's exception): the operator's
    side of the story, in CI output too."""
    report = yield
    if isinstance(report, pytest.TestReport) and report.failed:
        for operator in item.stash.get(OPERATORS_OF_TEST, []):
            tail = "\n".join(operator.logs().splitlines()[-LOG_LINES_SHOWN:])
            report.sections.append((f"operator log {operator.log_path} (last lines)", tail))
    return report


@pytest.fixture
def run_operator(cluster: Cluster, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[RunOperator]:
    """Start the operator as a subprocess: `with run_operator(namespace, *args, env={}) as op:`.

    The operator runs with KUBECONFIG and VAULTSYNC_OPERATOR_NAMESPACE set; `op.logs()`
    returns its output. Whatever is still running is stopped when the test ends.
    """
    started: list[OperatorProcess] = []
    request.node.stash[OPERATORS_OF_TEST] = started

    @contextmanager
    def run(namespace: str, *args: str, env: Mapping[str, str] | None = None) -> Iterator[OperatorProcess]:
        operator = OperatorProcess(
            kubeconfig=cluster.kubeconfig,
            namespace=namespace,
            log_path=tmp_path / f"operator-{len(started)}.log",
            args=args,
            env=env,
        )
        started.append(operator)
        operator.start()
        try:
            yield operator
        finally:
            operator.stop()

    yield run
    for operator in started:
        operator.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The chaos suite runs last: it restarts its own API server and etcd and tears its
    cluster down at the end, and the suites after it paid for that load (an operator's
    SIGTERM-stop test timed out right after it)."""
    items.sort(key=lambda item: "tests/chaos/" in item.nodeid)
