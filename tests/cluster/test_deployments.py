"""Deployments roll out for real: the scheduler places pods, kwok runs them, the
controller-manager's deployment and replicaset controllers drive a rolling update."""

from typing import Any

import pytest
from kubernetes import client

from tests.env.kube import KubeApi
from tests.env.waiting import eventually

pytestmark = pytest.mark.e2e

REPLICAS = 3
ROLLOUT_TIMEOUT_SECONDS = 120.0


def _deployment(name: str) -> client.V1Deployment:
    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=REPLICAS,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    containers=[client.V1Container(name="app", image="example.invalid/app:1")]
                ),
            ),
        ),
    )


def _rolled_out(api: KubeApi, namespace: str, name: str) -> Any:
    """The Deployment, once every replica runs the current template and is available."""
    deployment = api.apps.read_namespaced_deployment(name, namespace)
    status = deployment.status
    seen = (
        f"generation {deployment.metadata.generation} observed {status.observed_generation}, "
        f"replicas {status.replicas} updated {status.updated_replicas} "
        f"available {status.available_replicas}"
    )
    assert status.observed_generation == deployment.metadata.generation, seen
    assert status.replicas == REPLICAS, seen
    assert status.updated_replicas == REPLICAS, seen
    assert status.available_replicas == REPLICAS, seen
    return deployment


def _ready_pods(api: KubeApi, namespace: str, name: str) -> list[Any]:
    pods = api.core.list_namespaced_pod(namespace, label_selector=f"app={name}").items
    ready = [
        pod
        for pod in pods
        if pod.metadata.deletion_timestamp is None
        and any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
    ]
    assert len(ready) == REPLICAS, f"{len(ready)} of {len(pods)} pods Ready"
    return ready


def _replica_sets(api: KubeApi, namespace: str, deployment: Any) -> list[Any]:
    return [
        rs
        for rs in api.apps.list_namespaced_replica_set(namespace).items
        if any(ref.uid == deployment.metadata.uid for ref in rs.metadata.owner_references or [])
    ]


def test_deployment_pods_become_ready_on_cluster_nodes(kube_api: KubeApi, namespace: str) -> None:
    kube_api.apps.create_namespaced_deployment(namespace, _deployment("web"))

    eventually(
        lambda: _rolled_out(kube_api, namespace, "web"),
        what="the Deployment to become available",
        timeout=ROLLOUT_TIMEOUT_SECONDS,
    )
    pods = eventually(lambda: _ready_pods(kube_api, namespace, "web"), what=f"{REPLICAS} Ready pods")
    nodes = {node.metadata.name for node in kube_api.core.list_node().items}
    assert {pod.spec.node_name for pod in pods} <= nodes
    assert all(pod.status.phase == "Running" for pod in pods)


def test_changing_the_pod_template_rolls_out_a_new_replica_set(kube_api: KubeApi, namespace: str) -> None:
    kube_api.apps.create_namespaced_deployment(namespace, _deployment("web"))
    first = eventually(
        lambda: _rolled_out(kube_api, namespace, "web"),
        what="the first rollout",
        timeout=ROLLOUT_TIMEOUT_SECONDS,
    )
    [original] = _replica_sets(kube_api, namespace, first)

    kube_api.apps.patch_namespaced_deployment(
        "web",
        namespace,
        {"spec": {"template": {"metadata": {"annotations": {"vaultsync.io/restartedAt": "1"}}}}},
    )

    second = eventually(
        lambda: _rolled_out(kube_api, namespace, "web"),
        what="the rollout of the changed template",
        timeout=ROLLOUT_TIMEOUT_SECONDS,
    )
    assert second.metadata.generation > first.metadata.generation
    replica_sets = {rs.metadata.name: rs for rs in _replica_sets(kube_api, namespace, second)}
    assert original.metadata.name in replica_sets
    assert len(replica_sets) == 2, sorted(replica_sets)
    [new] = [rs for name, rs in replica_sets.items() if name != original.metadata.name]
    assert new.spec.template.metadata.annotations == {"vaultsync.io/restartedAt": "1"}
    assert new.status.ready_replicas == REPLICAS
    assert replica_sets[original.metadata.name].spec.replicas == 0
    pods = eventually(lambda: _ready_pods(kube_api, namespace, "web"), what="only new pods to be left")
    assert {p.metadata.labels["pod-template-hash"] for p in pods} == {
        new.metadata.labels["pod-template-hash"]
    }
