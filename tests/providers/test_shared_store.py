"""A ClusterSecretStore's client is shared: one ExternalSecret's denied or missing key never costs the others.

The operator runs as a process over two namespaces, both using one ClusterSecretStore that logs
in to a real OpenBao with AppRole. In one namespace an ExternalSecret asks for a key outside the
role's policy (403) and another for a key that does not exist (404); in the other, an
ExternalSecret reads an allowed key every two seconds. Vault's audit log counts the logins and
token revocations: the denials stay the asking ExternalSecrets' conditions, and the shared client
keeps its one token.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.e2e.conftest import Vaultsync
from tests.env import kube
from tests.env.kube import KubeApi
from tests.env.waiting import eventually
from tests.providers.servers.vault import VaultServer, start_dev_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def vault() -> Iterator[VaultServer]:
    server = start_dev_server(audit=True)
    try:
        server.request("POST", "sys/auth/approle", {"type": "approle"})
        yield server
    finally:
        server.close()


def audited(server: VaultServer, path: str) -> int:
    with server.audit_log.open("rb") as log:
        entries = [json.loads(line) for line in log if line.strip()]
    return sum(1 for e in entries if e.get("type") == "request" and e["request"]["path"] == path)


@pytest.fixture
def other_namespace(kube_api: KubeApi) -> Iterator[str]:
    name = kube.create_namespace(kube_api, prefix="vs-test-other-")
    yield name
    kube.delete_namespace(kube_api, name)


def read(vs: Vaultsync, name: str, store: str, key: str) -> None:
    vs.external_secret(
        name,
        {
            "storeRef": {"name": store, "kind": "ClusterSecretStore"},
            "refreshInterval": "2s",
            "data": [{"secretKey": "password", "remoteRef": {"key": key, "property": "password"}}],
        },
    )


def test_a_denied_and_a_missing_key_leave_the_shared_client_serving_another_namespace(
    vault: VaultServer,
    kube_api: KubeApi,
    namespace: str,
    other_namespace: str,
    install_crds: list[str],
    run_operator: Callable[..., Any],
) -> None:
    policy = 'path "secret/data/allowed/*" { capabilities = ["read"] }'
    vault.request("PUT", "sys/policies/acl/shared-allowed", {"policy": policy})
    vault.request(
        "POST", "auth/approle/role/shared", {"token_policies": ["shared-allowed"], "token_ttl": "1h"}
    )
    role_id = vault.request("GET", "auth/approle/role/shared/role-id")["data"]["role_id"]
    secret_id = vault.request("POST", "auth/approle/role/shared/secret-id")["data"]["secret_id"]
    vault.request("POST", "secret/data/allowed/db", {"data": {"password": "first"}})
    vault.request("POST", "secret/data/forbidden/db", {"data": {"password": "pw-forbidden"}})

    tenant, bystander = Vaultsync(kube_api, namespace), Vaultsync(kube_api, other_namespace)
    kube_api.core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="approle"),
            data={"secret-id": base64.b64encode(secret_id.encode()).decode()},
        ),
    )
    store = f"shared-{namespace}"
    auth = {
        "appRole": {
            "roleId": role_id,
            "secretRef": {"name": "approle", "key": "secret-id", "namespace": namespace},
        }
    }
    tenant.apply_store(store, {"provider": {"vault": {"server": vault.url, "auth": auth}}}, cluster=True)
    revoked_before = audited(vault, "auth/token/revoke-self")  # the dev server's own setup
    try:
        with run_operator(namespace, "--namespace", namespace, "--namespace", other_namespace):
            read(bystander, "app", store, "allowed/db")
            bystander.wait_data("app", {"password": "first"})
            logins = audited(vault, "auth/approle/login")

            read(tenant, "denied", store, "forbidden/db")
            read(tenant, "missing", store, "allowed/nothing-here")
            denied = tenant.wait_reason("denied", "ProviderError")
            tenant.wait_reason("missing", "KeyNotFound")
            assert "permission denied" in denied["message"] and "pw-forbidden" not in denied["message"]

            # Both keep failing on their retries while the bystander keeps refreshing.
            def retried() -> None:
                assert audited(vault, "secret/data/forbidden/db") >= 3
                assert audited(vault, "secret/data/allowed/nothing-here") >= 3

            eventually(retried, what="the denied and missing keys to be retried", timeout=60)
            vault.request("POST", "secret/data/allowed/db", {"data": {"password": "second"}})
            bystander.wait_data("app", {"password": "second"})

            assert audited(vault, "auth/approle/login") == logins == 1
            assert audited(vault, "auth/token/revoke-self") == revoked_before
            assert bystander.ready("app")["reason"] == "Synced"
    finally:
        kube_api.custom.delete_cluster_custom_object("vaultsync.io", "v1alpha1", "clustersecretstores", store)
