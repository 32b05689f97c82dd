"""The real API server's own 429: API Priority and Fairness turning the operator away.

A PriorityLevelConfiguration with the smallest share and `Reject` instead of queuing,
and a FlowSchema sending the test ServiceAccount's requests to it, make the real
kube-apiserver answer 429 (with Retry-After) as soon as a few of its requests overlap.
The operator's client must wait and succeed, not fail the reconcile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import kopf
import pytest
import yaml
from kubernetes import client
from prometheus_client import REGISTRY

from tests.env.kube import Cluster, KubeApi
from tests.env.waiting import eventually
from vaultsync.errors import KubeError, KubeForbidden
from vaultsync.kube import Kube

pytestmark = pytest.mark.e2e

ACCOUNT = "throttled"
CONCURRENT = 48


@pytest.fixture
def throttled_token(cluster: Cluster, kube_api: KubeApi, namespace: str) -> Iterator[str]:
    """A token whose every request is classified into a 1-share priority level that rejects."""
    name = f"{namespace}-limited"
    flowcontrol = client.FlowcontrolApiserverV1Api(kube_api.client)
    kube_api.core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=ACCOUNT))
    )
    kube_api.rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name=ACCOUNT),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="view"),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name=ACCOUNT, namespace=namespace)],
        ),
    )
    flowcontrol.create_priority_level_configuration(
        {
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
            "kind": "PriorityLevelConfiguration",
            "metadata": {"name": name},
            "spec": {
                "type": "Limited",
                "limited": {
                    "nominalConcurrencyShares": 1,
                    "lendablePercent": 0,
                    "borrowingLimitPercent": 0,
                    "limitResponse": {"type": "Reject"},
                },
            },
        }
    )
    flowcontrol.create_flow_schema(
        {
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
            "kind": "FlowSchema",
            "metadata": {"name": name},
            "spec": {
                "priorityLevelConfiguration": {"name": name},
                "matchingPrecedence": 100,
                "distinguisherMethod": {"type": "ByUser"},
                "rules": [
                    {
                        "subjects": [
                            {
                                "kind": "ServiceAccount",
                                "serviceAccount": {"name": ACCOUNT, "namespace": namespace},
                            }
                        ],
                        "resourceRules": [
                            {
                                "verbs": ["*"],
                                "apiGroups": ["*"],
                                "resources": ["*"],
                                "namespaces": ["*"],
                                "clusterScope": True,
                            }
                        ],
                    }
                ],
            },
        }
    )
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(expiration_seconds=600))
    token = str(
        kube_api.core.create_namespaced_service_account_token(ACCOUNT, namespace, request).status.token
    )
    try:
        yield token
    finally:
        flowcontrol.delete_flow_schema(name)
        flowcontrol.delete_priority_level_configuration(name)


def _retries(cause: str) -> float:
    total = 0.0
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            if sample.name == "vaultsync_kube_retries_total" and sample.labels.get("cause") == cause:
                total += sample.value
    return total


def test_the_api_servers_429_is_waited_out(cluster: Cluster, namespace: str, throttled_token: str) -> None:
    server = yaml.safe_load(Path(cluster.kubeconfig).read_text())["clusters"][0]["cluster"]
    info = kopf.ConnectionInfo(
        server=server["server"], ca_path=server["certificate-authority"], token=throttled_token
    )

    async def flood() -> tuple[int, float]:
        kube = Kube(info, connections=CONCURRENT)
        try:
            before = _retries("429")

            async def labels() -> dict[str, str]:
                return await kube.namespace_labels(namespace)

            await _until_ok(labels)
            results = await asyncio.gather(*(labels() for _ in range(CONCURRENT)))
            return len(results), _retries("429") - before
        finally:
            await kube.close()

    def throttled_and_served() -> None:
        served, throttled = asyncio.run(flood())
        assert served == CONCURRENT
        assert throttled > 0, "the API server did not throttle: no 429 was waited out"

    eventually(
        throttled_and_served, what="the API server to answer 429 and the client to wait it out", timeout=30
    )


async def _until_ok(check: Callable[[], Awaitable[object]]) -> None:
    """RBAC and the new FlowSchema take a moment to reach the API server's caches."""
    for _ in range(50):
        try:
            await check()
            return
        except (KubeForbidden, KubeError):
            await asyncio.sleep(0.2)
    await check()
