"""A Kubernetes API refusal ends in its own condition reason, `KubernetesError`, naming the
operation and who refused; the vault is not blamed (`ProviderError`) and nothing is emptied.

The refusal is the real API server's: a ResourceQuota admits no more Secrets in the
namespace, so the create of the target Secret is refused with 403.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from tests.e2e.conftest import Vaultsync, fake_entry
from tests.env.kube import KubeApi
from tests.env.waiting import eventually

pytestmark = pytest.mark.e2e


def _no_more_secrets(kube_api: KubeApi, namespace: str) -> None:
    """A quota of exactly the Secrets there are now (the operator's HMAC key), in force."""
    used = len(kube_api.core.list_namespaced_secret(namespace).items)
    quota = client.V1ResourceQuota(
        metadata=client.V1ObjectMeta(name="no-more-secrets"),
        spec=client.V1ResourceQuotaSpec(hard={"count/secrets": str(used)}),
    )
    kube_api.core.create_namespaced_resource_quota(namespace, quota)

    def counted() -> None:
        status = kube_api.core.read_namespaced_resource_quota("no-more-secrets", namespace).status
        assert status is not None and (status.used or {}).get("count/secrets") == str(used), status

    eventually(counted, what="the quota controller to count the namespace's Secrets", timeout=120)


def _exists(vs: Vaultsync, name: str) -> None:
    assert vs.secret_exists(name), f"Secret {name} does not exist yet"


def test_a_refused_secret_write_is_a_kubernetes_error_naming_the_operation(
    vs: Vaultsync, operator: Any, kube_api: KubeApi, namespace: str
) -> None:
    vs.fake_store("fake", [fake_entry("db", {"password": "pw-one"}, "1")])
    # Healthy before it holds the Lease: the key Secret comes once it starts.
    eventually(lambda: _exists(vs, "vaultsync-hmac-key"), what="the operator's HMAC key Secret", timeout=120)
    _no_more_secrets(kube_api, namespace)
    vs.external_secret(
        "app",
        {
            "storeRef": {"name": "fake"},
            "refreshInterval": "1h",
            "data": [{"secretKey": "password", "remoteRef": {"key": "db", "property": "password"}}],
        },
    )
    condition = vs.wait_reason("app", "KubernetesError", timeout=120)
    assert condition["status"] == "False"
    assert condition["message"] == "create secrets: forbidden by a ResourceQuota of the namespace", condition
    assert not vs.secret_exists("app")
    assert any(event.reason == "KubernetesError" for event in vs.events("app"))

    # The quota lifted, the next retry writes the Secret: the refusal was not final.
    kube_api.core.delete_namespaced_resource_quota("no-more-secrets", namespace)
    vs.wait_data("app", {"password": "pw-one"}, timeout=120)
    vs.wait_reason("app", "Synced")
