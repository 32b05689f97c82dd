"""Egress: a tenant's store endpoint must not steer the operator's requests inside the cluster.

The attack (SSRF with reflection): a SecretStore whose `vault.server` carries a path and a
`#`, e.g. `http://10.0.0.5:8080/internal/api#`. hvac appends `/v1/secret/data/<key>` to the
server, the `#` turns that into a fragment, and the operator GETs the internal URL of the
tenant's choice; a JSON `data` object in the answer is copied into the tenant's Secret. The
recording server plays that internal service, answering like a Vault holding a secret.

What stops it, each proven here against the live operator and API server:
  * the CRD refuses any endpoint that is not an origin, at apply, naming the field;
  * an endpoint that is an origin but resolves into a denied range (`--deny-egress-cidr`;
    here 127.0.0.1/32, where the recording server listens) is refused at connect time:
    the store and the ExternalSecret report the field and the rule, no connection is made,
    no Secret is written;
  * a ClusterSecretStore, written by an admin, is exempt from the deny list.
The bystander keeps syncing throughout, and no canary credential leaves the operator.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlsplit

import pytest
from kubernetes.client import ApiException

from tests.e2e.conftest import GROUP, VERSION, Vaultsync
from tests.e2e.tenancy.conftest import Bystander, RecordingServer, TenancyOperators, Tenant
from tests.env.kube import KubeApi

pytestmark = pytest.mark.e2e

STOLEN = {"internal": "an answer from inside the cluster"}
TOKEN_SECRET = "vault-token"
TENANT_VAULT_TOKEN = "tenant-own-vault-token"
DENY = "127.0.0.1/32"  # where the recording server listens: the "internal" address here


def vault_store(server: str, token_namespace: str | None = None) -> dict[str, Any]:
    secret_ref: dict[str, str] = {"name": TOKEN_SECRET, "key": "token"}
    if token_namespace:
        secret_ref["namespace"] = token_namespace
    return {
        "provider": {
            "vault": {
                "server": server,
                "path": "secret",
                "version": "v2",
                "auth": {"token": {"secretRef": secret_ref}},
            }
        }
    }


def read_everything(store: str, kind: str = "SecretStore") -> dict[str, Any]:
    return {
        "storeRef": {"name": store, "kind": kind},
        "refreshInterval": "1h",
        "dataFrom": [{"extract": {"key": "app"}}],
    }


def give_vault_token(tenant: Tenant) -> None:
    tenant.api.core.create_namespaced_secret(
        tenant.namespace,
        {
            "metadata": {"name": TOKEN_SECRET},
            "data": {"token": base64.b64encode(TENANT_VAULT_TOKEN.encode()).decode()},
        },
    )


def test_ssrf_with_reflection_through_a_path_and_fragment_is_refused_at_apply(
    tenant: Tenant,
    bystander: Bystander,
    recording_server: RecordingServer,
    tenancy_operator: TenancyOperators,
) -> None:
    recording_server.respond_as_vault(STOLEN)
    with tenancy_operator() as operator:
        give_vault_token(tenant)
        for i, server in enumerate(
            [
                f"{recording_server.url}/internal/api#",
                f"{recording_server.url}/internal/api?",
                f"http://vault.example.com@{urlsplit(recording_server.url).netloc}",
                f"{recording_server.url} ",
            ]
        ):
            with pytest.raises(ApiException) as refused:
                tenant.vs.apply_store(f"ssrf-{i}", vault_store(server))
            assert refused.value.status == 422
            assert "spec.provider.vault.server" in str(refused.value.body)
            assert "must be an origin" in str(refused.value.body)
        assert recording_server.requests == []
        bystander.assert_still_syncing()
        assert recording_server.requests == []
        assert operator.returncode is None


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_an_endpoint_resolving_into_a_denied_range_is_refused_at_connect_time(
    host: str,
    tenant: Tenant,
    bystander: Bystander,
    recording_server: RecordingServer,
    tenancy_operator: TenancyOperators,
) -> None:
    recording_server.respond_as_vault(STOLEN)
    port = urlsplit(recording_server.url).port
    with tenancy_operator("--deny-egress-cidr", DENY):
        give_vault_token(tenant)
        tenant.vs.apply_store("inside", vault_store(f"http://{host}:{port}"))
        tenant.vs.external_secret("inside", read_everything("inside"))
        condition = tenant.vs.wait_reason("inside", "ProviderError")
        rule = f"denied by --deny-egress-cidr {DENY}"
        assert "spec.provider.vault.server: resolves to " in condition["message"]
        assert rule in condition["message"]
        store = tenant.vs.wait_store_ready("inside", status="False")
        assert "spec.provider.vault.server: resolves to " in store["message"] and rule in store["message"]
        bystander.assert_still_syncing()
        assert not tenant.vs.secret_exists("inside")
    assert recording_server.requests == []


def test_a_cluster_secret_store_to_a_denied_address_still_works(
    tenant: Tenant,
    bystander: Bystander,
    recording_server: RecordingServer,
    tenancy_operator: TenancyOperators,
    kube_api: KubeApi,
) -> None:
    recording_server.respond_as_vault(STOLEN)
    admin = Vaultsync(kube_api, tenant.namespace)
    name = f"{tenant.namespace}-platform"
    with tenancy_operator("--deny-egress-cidr", DENY):
        give_vault_token(tenant)
        admin.apply_store(
            name,
            {
                **vault_store(recording_server.url, tenant.namespace),
                "conditions": [{"namespaces": [tenant.namespace]}],
            },
            cluster=True,
        )
        try:
            tenant.vs.external_secret("platform", read_everything(name, "ClusterSecretStore"))
            tenant.vs.wait_data("platform", STOLEN)
            assert recording_server.requests
            bystander.assert_still_syncing()
        finally:
            kube_api.custom.delete_cluster_custom_object(GROUP, VERSION, "clustersecretstores", name)
