"""ServiceAccount tokens vaultsync mints: the provider's audience, ten minutes, never one the API accepts.

A store's `server` is written by the tenant and may be a host the tenant runs. Whatever token
vaultsync sends there must be useless against the cluster: these tests ask the real API server
for the tokens (TokenRequest), decode them, and ask the same API server (TokenReview with its
default audiences) whether it would accept them. A stand-in "Vault" records what it is sent.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest
from kubernetes import client

from tests.e2e.tenancy.recording import RecordingServer
from tests.env.kube import Cluster, KubeApi
from vaultsync.credentials import StoreCredentials
from vaultsync.errors import InvalidStoreConfig, VaultsyncError
from vaultsync.kube import Kube
from vaultsync.providers import PROVIDERS
from vaultsync.providers.base import ServiceAccountSelector, StoreContext

pytestmark = pytest.mark.e2e

FIELD = "spec.provider.vault.auth.kubernetes.serviceAccountRef"


class FakeVault:
    """A server posing as Vault (or STS) that refuses every login; `jwts` are the tokens it got."""

    def __init__(self) -> None:
        self.server = RecordingServer()
        self.server.respond_with(403, {"errors": ["permission denied"]})
        self.url = self.server.url

    @property
    def jwts(self) -> list[str]:
        found: list[str] = []
        for request in self.server.requests:
            if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
                found += parse_qs(request.body.decode()).get("WebIdentityToken", [])  # STS
            elif b'"jwt"' in request.body:
                found.append(json.loads(request.body)["jwt"])  # Vault's Kubernetes login
        return found

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def fake_vault() -> Iterator[FakeVault]:
    server = FakeVault()
    yield server
    server.close()


@pytest.fixture
def service_accounts(
    kube_api: KubeApi, namespace: str, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> str:
    for name in ("app", "operator"):
        kube_api.core.create_namespaced_service_account(
            namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
        )
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))  # vaultsync.kube.Kube logs in with it
    return namespace


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded


def api_server_accepts(kube_api: KubeApi, token: str) -> bool:
    """The API server's own verdict, for its default audiences."""
    review = kube_api.authentication.create_token_review(
        client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token))
    )
    return bool(review.status.authenticated)


def api_audiences(kube_api: KubeApi, namespace: str) -> list[str]:
    """The API server's audiences: those of a token requested without any."""
    token = kube_api.core.create_namespaced_service_account_token(
        "app", namespace, client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[]))
    ).status.token
    audiences = claims(token)["aud"]
    return [audiences] if isinstance(audiences, str) else list(audiences)


def run_with_kube(scenario: Any) -> Any:
    async def wrapped() -> Any:
        kube = Kube()
        try:
            return await scenario(kube)
        finally:
            await kube.close()

    return asyncio.run(wrapped())


@pytest.mark.parametrize(
    ("provider", "auth", "audience"),
    [
        ("vault", {"kubernetes": {"role": "r", "serviceAccountRef": {"name": "app"}}}, "vault"),
        (
            "aws",
            {"jwt": {"serviceAccountRef": {"name": "app"}, "roleArn": "arn:aws:iam::1:role/r"}},
            "sts.amazonaws.com",
        ),
    ],
)
def test_the_token_a_tenants_server_receives_has_the_providers_audience_and_the_api_server_refuses_it(
    kube_api: KubeApi,
    service_accounts: str,
    fake_vault: FakeVault,
    provider: str,
    auth: dict[str, Any],
    audience: str,
) -> None:
    namespace = service_accounts
    config: dict[str, Any] = (
        {"server": fake_vault.url, "auth": auth}
        if provider == "vault"
        else {"region": "us-east-1", "endpoint": fake_vault.url, "auth": auth}
    )
    store = StoreContext(kind="SecretStore", name="tenant", namespace=namespace)

    async def scenario(kube: Kube) -> None:
        chosen = PROVIDERS[provider]
        with pytest.raises(VaultsyncError):  # the stand-in refuses every login
            await chosen.new_client(chosen.parse_config(config), store, StoreCredentials(kube, store))

    run_with_kube(scenario)
    assert len(fake_vault.jwts) == 1
    (received,) = fake_vault.jwts
    token = claims(received)
    assert token["aud"] == [audience]
    assert token["exp"] - token["iat"] == 600
    assert token["sub"] == f"system:serviceaccount:{namespace}:app"
    assert not api_server_accepts(kube_api, received)


@pytest.mark.parametrize(
    ("audiences", "default", "expected"),
    [
        ([], "vault", ["vault"]),
        ([], "sts.amazonaws.com", ["sts.amazonaws.com"]),
        ([], "api://AzureADTokenExchange", ["api://AzureADTokenExchange"]),
        (["my-vault"], "vault", ["my-vault"]),
    ],
)
def test_a_requested_token_lives_ten_minutes_for_the_providers_audience(
    kube_api: KubeApi, service_accounts: str, audiences: list[str], default: str, expected: list[str]
) -> None:
    namespace = service_accounts
    store = StoreContext(kind="SecretStore", name="tenant", namespace=namespace)
    selector = ServiceAccountSelector(name="app", audiences=audiences)

    async def scenario(kube: Kube) -> str:
        token: str = await StoreCredentials(kube, store).service_account_token(selector, FIELD, [default])
        return token

    token = run_with_kube(scenario)
    assert claims(token)["aud"] == expected
    assert claims(token)["exp"] - claims(token)["iat"] == 600
    assert not api_server_accepts(kube_api, token)


@pytest.mark.parametrize("extra", [[], ["vault"]], ids=["alone", "with-vault"])
def test_a_tenant_audience_the_api_server_accepts_is_refused_naming_the_field(
    kube_api: KubeApi, service_accounts: str, fake_vault: FakeVault, extra: list[str]
) -> None:
    namespace = service_accounts
    audiences = api_audiences(kube_api, namespace) + extra
    store = StoreContext(kind="SecretStore", name="tenant", namespace=namespace)
    ref = {"name": "app", "audiences": audiences}
    config = {"server": fake_vault.url, "auth": {"kubernetes": {"role": "r", "serviceAccountRef": ref}}}

    async def scenario(kube: Kube) -> InvalidStoreConfig:
        provider = PROVIDERS["vault"]
        with pytest.raises(InvalidStoreConfig) as caught:
            await provider.new_client(provider.parse_config(config), store, StoreCredentials(kube, store))
        return caught.value

    error = run_with_kube(scenario)
    assert f"{FIELD}.audiences" in error.message and "API server accepts" in error.message
    assert fake_vault.jwts == []  # the token never left the operator


def test_a_cluster_store_logs_in_as_the_operator_with_a_vault_audience_token_not_its_api_token(
    kube_api: KubeApi, service_accounts: str, fake_vault: FakeVault
) -> None:
    namespace = service_accounts
    cluster_store = StoreContext(kind="ClusterSecretStore", name="platform", namespace=None)
    config = {"server": fake_vault.url, "auth": {"kubernetes": {"role": "r"}}}

    async def scenario(kube: Kube) -> None:
        provider = PROVIDERS["vault"]
        credentials = StoreCredentials(kube, cluster_store, operator_account=(namespace, "operator"))
        with pytest.raises(VaultsyncError):
            await provider.new_client(provider.parse_config(config), cluster_store, credentials)

    run_with_kube(scenario)
    (received,) = fake_vault.jwts
    assert claims(received)["sub"] == f"system:serviceaccount:{namespace}:operator"
    assert claims(received)["aud"] == ["vault"]
    assert claims(received)["exp"] - claims(received)["iat"] == 600
    assert not api_server_accepts(kube_api, received)


def test_a_namespaced_store_may_not_ask_for_the_operators_token(
    kube_api: KubeApi, service_accounts: str
) -> None:
    namespace = service_accounts
    store = StoreContext(kind="SecretStore", name="tenant", namespace=namespace)

    async def scenario(kube: Kube) -> InvalidStoreConfig:
        credentials = StoreCredentials(kube, store, operator_account=(namespace, "operator"))
        with pytest.raises(InvalidStoreConfig) as caught:
            await credentials.operator_token(FIELD, ["vault"])
        return caught.value

    assert "only a ClusterSecretStore" in run_with_kube(scenario).message
