"""The node image's own cluster add-ons work where they differ from kindest/node's.

Its coredns is upstream's with only the plugins kind's Corefile uses, and its
local-path-provisioner is built against the control plane's client-go rather than the one
its release pins (docs/testenv.md). A pod here resolves a Service through the cluster's DNS
and writes to a volume the default StorageClass provisions: the `kubernetes` plugin and the
provisioner (with its helper pod) both have to work for it to succeed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.env import kube
from tests.env.kube import KubeApi
from tests.env.waiting import eventually
from tests.kind.kindcluster import KindCluster

POD_TIMEOUT = 240.0
CHECK = (
    "import socket; "
    "print('dns', socket.gethostbyname('kubernetes.default.svc.cluster.local')); "
    "open('/data/probe', 'w').write('written'); "
    "print('volume', open('/data/probe').read())"
)


@pytest.fixture
def scratch_namespace(kube_api: KubeApi) -> Iterator[str]:
    name = kube.create_namespace(kube_api, "kind-node-")
    yield name
    kube.delete_namespace(kube_api, name)


def _claim() -> dict[str, Any]:
    # No storageClassName: the default class, which kind's manifest makes `standard`.
    return {
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "16Mi"}}},
    }


def _pod(image: str) -> dict[str, Any]:
    # The operator image has a Python; it is loaded into the nodes already.
    return {
        "metadata": {"name": "probe"},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsUser": 0},
            "containers": [
                {
                    "name": "probe",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["python", "-c", CHECK],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
        },
    }


def test_cluster_dns_and_the_default_storage_class_work(
    kind_cluster: KindCluster, kube_api: KubeApi, scratch_namespace: str
) -> None:
    kind_cluster.load(kind_cluster.operator_image)
    kube_api.core.create_namespaced_persistent_volume_claim(scratch_namespace, _claim())
    kube_api.core.create_namespaced_pod(scratch_namespace, _pod(kind_cluster.operator_image))

    def finished() -> str:
        phase = str(kube_api.core.read_namespaced_pod(name="probe", namespace=scratch_namespace).status.phase)
        assert phase in ("Succeeded", "Failed"), phase
        return phase

    phase = eventually(finished, what="the probe pod to finish", timeout=POD_TIMEOUT)
    log = kube_api.core.read_namespaced_pod_log(name="probe", namespace=scratch_namespace)
    service_ip = kube_api.core.read_namespaced_service(name="kubernetes", namespace="default").spec.cluster_ip
    assert phase == "Succeeded", log
    assert f"dns {service_ip}" in log
    assert "volume written" in log
    claim = kube_api.core.read_namespaced_persistent_volume_claim(name="data", namespace=scratch_namespace)
    assert claim.status.phase == "Bound"
