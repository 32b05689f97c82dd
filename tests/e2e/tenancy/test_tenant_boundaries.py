"""The tenant-attack suite's ground truth: the tenant is boxed in, and the fixtures really work.

Every attack module rests on these facts: the tenant's token cannot leave its namespace
through RBAC (so whatever it gains, it gains through the operator), the tenant can still do
its legitimate job, the bystander syncs, and the recording server sees what the operator sends.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client import ApiException

from tests.e2e.conftest import GROUP, VERSION, fake_entry
from tests.e2e.tenancy.conftest import Bystander, RecordingServer, TenancyOperators, Tenant
from tests.env.kube import KubeApi

pytestmark = pytest.mark.e2e

TENANT_VAULT_TOKEN = "tenant-own-vault-token"


def forbidden(call: Any, *args: Any, **kwargs: Any) -> ApiException:
    with pytest.raises(ApiException) as raised:
        call(*args, **kwargs)
    assert raised.value.status == 403, raised.value
    return raised.value


def test_tenant_token_cannot_leave_its_namespace(tenant: Tenant, bystander: Bystander) -> None:
    api = tenant.api
    # Its own job works: Secrets, ConfigMaps and vaultsync objects in its namespace.
    api.core.create_namespaced_config_map(tenant.namespace, {"metadata": {"name": "app"}, "data": {"a": "b"}})
    assert api.core.list_namespaced_secret(tenant.namespace).items is not None
    # Another namespace's Secret, by name and by list.
    forbidden(api.core.read_namespaced_secret, bystander.private_secret, bystander.namespace)
    forbidden(api.core.list_namespaced_secret, bystander.namespace)
    forbidden(
        api.custom.list_namespaced_custom_object, GROUP, VERSION, bystander.namespace, "externalsecrets"
    )
    # Cluster-scoped objects: a ClusterSecretStore, and its own namespace's labels.
    forbidden(
        api.custom.create_cluster_custom_object,
        GROUP,
        VERSION,
        "clustersecretstores",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ClusterSecretStore",
            "metadata": {"name": f"{tenant.namespace}-escape"},
            "spec": {"provider": {"fake": {"data": []}}},
        },
    )
    forbidden(
        api.core.patch_namespace, tenant.namespace, {"metadata": {"labels": {"team": "platform-admins"}}}
    )
    # Nor can it grant itself more: no RBAC rights even at home.
    forbidden(api.rbac.list_namespaced_role, tenant.namespace)


def test_tenant_store_syncs_beside_the_bystander(
    tenant: Tenant, bystander: Bystander, tenancy_operator: TenancyOperators, kube_api: KubeApi
) -> None:
    with tenancy_operator() as operator:
        tenant.vs.fake_store("own", [fake_entry("app", {"password": "tenant-pw"})])
        tenant.vs.external_secret(
            "app",
            {
                "storeRef": {"name": "own"},
                "refreshInterval": "1h",
                "data": [{"secretKey": "password", "remoteRef": {"key": "app", "property": "password"}}],
            },
        )
        tenant.vs.wait_data("app", {"password": "tenant-pw"})
        tenant.vs.wait_reason("app", "Synced")
        status = bystander.assert_still_syncing()
        assert status["syncedAt"]
        assert operator.returncode is None
    # The operator's HMAC key lives where the tenant cannot read it.
    assert tenancy_operator.operator_namespace not in tenancy_operator.watched
    forbidden(tenant.api.core.list_namespaced_secret, tenancy_operator.operator_namespace)
    assert kube_api.core.list_namespaced_secret(tenancy_operator.operator_namespace).items


def test_recording_server_sees_what_the_operator_sends(
    tenant: Tenant, recording_server: RecordingServer, tenancy_operator: TenancyOperators
) -> None:
    recording_server.respond_as_vault({"password": "from-the-stand-in"})
    tenant.api.core.create_namespaced_secret(
        tenant.namespace, {"metadata": {"name": "vault-token"}, "stringData": {"token": TENANT_VAULT_TOKEN}}
    )
    with tenancy_operator():
        tenant.vs.apply_store(
            "stand-in",
            {
                "provider": {
                    "vault": {
                        "server": recording_server.url,
                        "path": "secret",
                        "auth": {"token": {"secretRef": {"name": "vault-token", "key": "token"}}},
                    }
                }
            },
        )
        tenant.vs.external_secret(
            "app",
            {
                "storeRef": {"name": "stand-in"},
                "refreshInterval": "1h",
                "data": [{"secretKey": "password", "remoteRef": {"key": "app", "property": "password"}}],
            },
        )
        tenant.vs.wait_data("app", {"password": "from-the-stand-in"})
    reads = [r for r in recording_server.requests if r.path.startswith("/v1/secret/data/app")]
    assert reads, [f"{r.method} {r.path}" for r in recording_server.requests]
    assert {r.method for r in reads} == {"GET"}
    assert reads[0].headers.get("x-vault-token") == TENANT_VAULT_TOKEN
    assert TENANT_VAULT_TOKEN in recording_server.received_text()
