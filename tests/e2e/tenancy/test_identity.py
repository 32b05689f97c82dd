"""Identity attacks: a tenant tries to make the operator act as itself, or to harvest a cluster token.

The operator runs with canary cloud credentials in its environment (the conftest fails the test
if any of them reaches the tenant's server, a default endpoint, a log or a status). The tenant:

- writes a credential Secret whose keys are empty, blank, not UTF-8 or missing, hoping the SDK
  falls back to its default chain (the operator's identity);
- points a store's Kubernetes/web-identity login at a server it runs, to collect the
  ServiceAccount token the operator mints, then replays it against the API server;
- names the API server's own audience in `serviceAccountRef.audiences`;
- omits the auth block, or names the operator's managed identity.

Each is refused with the store `Ready=False` naming the field, the tenant's server receives
nothing it could use, and the bystander keeps syncing.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from tests.e2e.tenancy.conftest import Bystander, RecordingServer, TenancyOperators, Tenant
from tests.env.kube import Cluster, KubeApi, bearer_token_api

pytestmark = pytest.mark.e2e

STORE = "stolen-identity"

# What a tenant may put in its credential Secret; None leaves the key out.
UNUSABLE = [
    pytest.param(b"", "is empty", id="empty"),
    pytest.param(b"  \n\t", "is empty", id="whitespace"),
    pytest.param(b"\xff\xfe\x80", "is not UTF-8 text", id="not-utf8"),
    pytest.param(None, "has no key", id="missing"),
]


def credential_secret(tenant: Tenant, name: str, values: dict[str, bytes | None]) -> None:
    data = {key: base64.b64encode(value).decode() for key, value in values.items() if value is not None}
    tenant.api.core.create_namespaced_secret(
        tenant.namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name=name), data=data or {"other": "eA=="}),
    )


def use_store(tenant: Tenant, provider: dict[str, Any]) -> None:
    tenant.vs.apply_store(STORE, {"provider": provider})
    tenant.vs.external_secret(
        "app",
        {
            "storeRef": {"name": STORE},
            "refreshInterval": "1h",
            "data": [{"secretKey": "password", "remoteRef": {"key": "db", "property": "password"}}],
        },
    )


def store_refused(tenant: Tenant, *fragments: str) -> str:
    condition = tenant.vs.wait_store_ready(STORE, status="False")
    message = str(condition["message"])
    for fragment in fragments:
        assert fragment in message, message
    return message


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded


def api_audiences(kube_api: KubeApi, namespace: str, service_account: str) -> list[str]:
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[]))
    token = kube_api.core.create_namespaced_service_account_token(service_account, namespace, request)
    audience = claims(token.status.token)["aud"]
    return [audience] if isinstance(audience, str) else list(audience)


@pytest.mark.parametrize(("value", "why"), UNUSABLE)
def test_unusable_aws_keys_never_make_the_operator_sign_with_its_own(
    tenant: Tenant,
    bystander: Bystander,
    tenancy_operator: TenancyOperators,
    recording_server: RecordingServer,
    value: bytes | None,
    why: str,
) -> None:
    """boto3 reads an empty key as "none given" and signs with the default chain instead."""
    credential_secret(tenant, "aws-creds", {"id": value, "secret": value})
    auth = {
        "secretRef": {
            "accessKeyId": {"name": "aws-creds", "key": "id"},
            "secretAccessKey": {"name": "aws-creds", "key": "secret"},
        }
    }
    with tenancy_operator():
        use_store(tenant, {"aws": {"region": "us-east-1", "endpoint": recording_server.url, "auth": auth}})
        store_refused(tenant, "spec.provider.aws.auth.secretRef.accessKeyId", why)
        tenant.vs.wait_reason("app", "StoreNotReady")
        bystander.assert_still_syncing()
    assert recording_server.requests == []


@pytest.mark.parametrize(("value", "why"), UNUSABLE)
def test_an_unusable_vault_token_is_refused_before_anything_is_sent(
    tenant: Tenant,
    bystander: Bystander,
    tenancy_operator: TenancyOperators,
    recording_server: RecordingServer,
    value: bytes | None,
    why: str,
) -> None:
    credential_secret(tenant, "vault-token", {"token": value})
    auth = {"token": {"secretRef": {"name": "vault-token", "key": "token"}}}
    with tenancy_operator():
        use_store(tenant, {"vault": {"server": recording_server.url, "auth": auth}})
        store_refused(tenant, "spec.provider.vault.auth.token.secretRef", why)
        bystander.assert_still_syncing()
    assert recording_server.requests == []


def test_the_token_a_tenants_vault_collects_is_useless_against_the_api_server(
    tenant: Tenant,
    bystander: Bystander,
    tenancy_operator: TenancyOperators,
    recording_server: RecordingServer,
    kube_api: KubeApi,
    cluster: Cluster,
) -> None:
    recording_server.respond_with(403, {"errors": ["permission denied"]})
    auth = {"kubernetes": {"role": "app", "serviceAccountRef": {"name": tenant.service_account}}}
    with tenancy_operator():
        use_store(tenant, {"vault": {"server": recording_server.url, "auth": auth}})
        (login, *_) = recording_server.wait_for_requests(1)
        store_refused(tenant, "Kubernetes login")
        bystander.assert_still_syncing()
    assert login.path.endswith("/auth/kubernetes/login")
    jwt = json.loads(login.body)["jwt"]
    token = claims(jwt)
    assert token["aud"] == ["vault"]
    assert token["exp"] - token["iat"] == 600
    assert token["sub"] == f"system:serviceaccount:{tenant.namespace}:{tenant.service_account}"
    review = kube_api.authentication.create_token_review(
        client.V1TokenReview(spec=client.V1TokenReviewSpec(token=jwt))
    )
    assert review.status.authenticated is not True
    replayed = bearer_token_api(cluster.kubeconfig, jwt)
    try:
        with pytest.raises(ApiException) as refused:
            replayed.core.list_namespaced_secret(tenant.namespace)
        assert refused.value.status == 401
    finally:
        replayed.client.close()


def test_a_tenant_asking_for_the_api_servers_audience_gets_no_token_sent(
    tenant: Tenant,
    bystander: Bystander,
    tenancy_operator: TenancyOperators,
    recording_server: RecordingServer,
    kube_api: KubeApi,
) -> None:
    audiences = api_audiences(kube_api, tenant.namespace, tenant.service_account)
    ref = {"name": tenant.service_account, "audiences": audiences}
    with tenancy_operator():
        use_store(
            tenant,
            {
                "vault": {
                    "server": recording_server.url,
                    "auth": {"kubernetes": {"role": "app", "serviceAccountRef": ref}},
                }
            },
        )
        store_refused(
            tenant, "spec.provider.vault.auth.kubernetes.serviceAccountRef.audiences", "API server accepts"
        )
        bystander.assert_still_syncing()
    assert recording_server.requests == []


@pytest.mark.parametrize(
    ("provider", "field"),
    [
        ({"aws": {"region": "us-east-1"}}, "spec.provider.aws.auth"),
        (
            {"vault": {"server": "http://127.0.0.1:9", "auth": {"kubernetes": {"role": "app"}}}},
            "serviceAccountRef",
        ),
        (
            {"azurekv": {"vaultUrl": "https://127.0.0.1:9", "auth": {"managedIdentity": {}}}},
            "spec.provider.azurekv.auth.managedIdentity",
        ),
    ],
    ids=["aws-default-chain", "vault-operator-service-account", "azure-managed-identity"],
)
def test_a_namespaced_store_cannot_borrow_the_operators_identity(
    tenant: Tenant,
    bystander: Bystander,
    tenancy_operator: TenancyOperators,
    provider: dict[str, Any],
    field: str,
) -> None:
    """Refused by the CRD's rules where they can see it, else by the operator; never used."""
    with tenancy_operator():
        try:
            use_store(tenant, provider)
        except ApiException as exc:
            assert exc.status == 422 and field in str(exc.body), exc.body
        else:
            store_refused(tenant, field, "ClusterSecretStore")
        bystander.assert_still_syncing()


@pytest.mark.parametrize(("value", "why"), UNUSABLE)
def test_an_unusable_azure_client_secret_is_refused_before_anything_is_sent(
    tenant: Tenant,
    bystander: Bystander,
    tenancy_operator: TenancyOperators,
    tls_recording_server: RecordingServer,
    value: bytes | None,
    why: str,
) -> None:
    credential_secret(tenant, "azure-creds", {"secret": value})
    auth = {"clientSecret": {"clientId": "app", "secretRef": {"name": "azure-creds", "key": "secret"}}}
    azure = {
        "vaultUrl": tls_recording_server.url,
        "authorityHost": tls_recording_server.url,
        "tenantId": "contoso.onmicrosoft.com",
        "caBundle": tls_recording_server.ca_bundle,
        "verifyChallengeResource": False,
        "auth": auth,
    }
    with tenancy_operator():
        use_store(tenant, {"azurekv": azure})
        store_refused(tenant, "spec.provider.azurekv.auth.clientSecret.secretRef", why)
        bystander.assert_still_syncing()
    assert tls_recording_server.requests == []


def test_a_cluster_store_logs_in_to_vault_as_the_operator_with_a_vault_audience_token(
    tenancy_operator: TenancyOperators,
    recording_server: RecordingServer,
    kube_api: KubeApi,
    cluster: Cluster,
) -> None:
    """Without serviceAccountRef, a ClusterSecretStore's Kubernetes login is the operator's own
    ServiceAccount (--service-account), by TokenRequest for `vault`: never its API token."""
    namespace = tenancy_operator.operator_namespace
    kube_api.core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="vaultsync"))
    )
    recording_server.respond_with(403, {"errors": ["permission denied"]})
    store = f"operator-login-{namespace}"
    body = {
        "apiVersion": "vaultsync.io/v1alpha1",
        "kind": "ClusterSecretStore",
        "metadata": {"name": store},
        "spec": {
            "provider": {"vault": {"server": recording_server.url, "auth": {"kubernetes": {"role": "r"}}}}
        },
    }
    kube_api.custom.create_cluster_custom_object("vaultsync.io", "v1alpha1", "clustersecretstores", body)
    try:
        with tenancy_operator("--service-account", "vaultsync"):
            (login, *_) = recording_server.wait_for_requests(1)
    finally:
        kube_api.custom.delete_cluster_custom_object("vaultsync.io", "v1alpha1", "clustersecretstores", store)
    jwt = json.loads(login.body)["jwt"]
    assert claims(jwt)["sub"] == f"system:serviceaccount:{namespace}:vaultsync"
    assert claims(jwt)["aud"] == ["vault"]
    review = kube_api.authentication.create_token_review(
        client.V1TokenReview(spec=client.V1TokenReviewSpec(token=jwt))
    )
    assert review.status.authenticated is not True
