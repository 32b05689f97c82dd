"""The local cluster is made of the pinned, locally built releases, and nothing else."""

import pytest

from tests.env import cluster as local_cluster
from tests.env import tools, versions
from tests.env.kube import Cluster, KubeApi

pytestmark = pytest.mark.e2e


def _local_only(cluster: Cluster) -> None:
    if not cluster.local:
        pytest.skip("pins describe the local cluster; VAULTSYNC_TEST_KUBECONFIG points elsewhere")


def test_api_server_reports_the_pinned_release(cluster: Cluster, kube_api: KubeApi) -> None:
    _local_only(cluster)
    info = kube_api.version.get_code()
    assert info.git_version == versions.KUBERNETES
    assert info.git_tree_state == "clean"


def test_local_cluster_has_at_least_two_ready_kwok_nodes(cluster: Cluster, kube_api: KubeApi) -> None:
    _local_only(cluster)
    nodes = kube_api.core.list_node(label_selector="type=kwok").items
    ready = [
        node.metadata.name
        for node in nodes
        if any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
    ]
    assert len(ready) >= 2, f"Ready kwok nodes: {ready}"


def test_every_cached_binary_reports_its_pinned_version(cluster: Cluster) -> None:
    _local_only(cluster)
    for tool in tools.all_tools():
        assert tools.is_current(tool), (
            f"{tool.current} says {tools.reported_version(tool.current, tool)!r}, "
            f"expected {tool.version_marker!r}"
        )


def test_kwokctl_plans_no_download(cluster: Cluster) -> None:
    _local_only(cluster)
    local_cluster.check_no_downloads()


def test_a_download_in_the_kwokctl_plan_is_refused() -> None:
    plan = (
        "# Download /home/u/.cache/vaultsync/bin/current/etcd to /x/bin/etcd\n"
        "# Download https://dl.k8s.io/release/v1.36.3/bin/linux/amd64/kube-apiserver to /x/bin/k\n"
    )
    assert local_cluster.downloads_in(plan) == [plan.splitlines()[1]]
