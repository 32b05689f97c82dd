"""Whose identity a store uses, against the real servers: its own, or none; never the operator's.

The operator's process holds its own credentials (AWS keys in its environment, a Vault token in
VAULT_TOKEN); a tenant's store whose credential Secret is missing, empty, blank or not text must be
refused naming the field, and the server must never see the operator's identity. moto is reached
through a recording proxy that keeps the access key id of every signed request; OpenBao's audit
log shows every request it received. Tokens requested for a provider carry its own audience.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.providers.backends.aws import AwsBackend
from tests.providers.backends.credentials import OPERATOR, StaticCredentials, TokenRequest
from tests.providers.recording_proxy import RecordingProxy, recording_proxy
from tests.providers.servers.vault import VaultServer, start_dev_server
from vaultsync.errors import (
    CredentialNotFound,
    InvalidStoreConfig,
    PermissionDenied,
    ProviderError,
    VaultsyncError,
)
from vaultsync.providers import PROVIDERS
from vaultsync.providers.base import RemoteRef, SecretsClient, StoreContext
from vaultsync.providers.vault import VaultClient

TENANT = StoreContext(kind="SecretStore", name="tenant", namespace="team-a")
CLUSTER = StoreContext(kind="ClusterSecretStore", name="platform", namespace=None)
CANARY_KEY_ID = "AKIACANARYOPERATOR01"
CANARY_SECRET = "canary-operator-secret-access-key"
UNREACHABLE = "http://127.0.0.1:9"

# A credential value as a tenant may write it, and how the refusal ends.
BAD_VALUES = [
    pytest.param(None, "has no key", id="missing"),
    pytest.param(b"", "is empty", id="empty"),
    pytest.param(b" \n\t ", "is empty", id="whitespace"),
    pytest.param(b"\xff\xfe\x80", "is not UTF-8 text", id="not-utf8"),
    pytest.param(b"AKIA\x00X", "contains control characters", id="control-characters"),
]


async def connect(
    provider: str, config: dict[str, Any], credentials: StaticCredentials, store: StoreContext = TENANT
) -> SecretsClient:
    chosen = PROVIDERS[provider]
    return await chosen.new_client(chosen.parse_config(config), store, credentials)


def refusal(provider: str, config: dict[str, Any], credentials: StaticCredentials) -> VaultsyncError | None:
    """What the store got instead of a working client: the error at connecting, or at its first use."""

    async def scenario() -> VaultsyncError | None:
        try:
            client = await connect(provider, config, credentials)
        except VaultsyncError as exc:
            return exc
        try:  # it should not exist; what would it do?
            await client.validate()
        except VaultsyncError as exc:
            return exc
        finally:
            await client.close()
        return None

    return asyncio.run(scenario())


def assert_refused(error: VaultsyncError | None, field: str, why: str) -> None:
    """Refused as the store's configuration (not by the server), naming the field and the fault."""
    assert isinstance(error, InvalidStoreConfig | CredentialNotFound), error
    assert field in error.message
    assert why in error.message


def with_value(
    secrets: dict[tuple[str, str], bytes], where: tuple[str, str], value: bytes | None
) -> StaticCredentials:
    secrets = dict(secrets)
    if value is None:
        secrets.pop(where, None)
    else:
        secrets[where] = value
    return StaticCredentials(secrets=secrets)


# AWS -----------------------------------------------------------------------------------


@pytest.fixture
def operator_aws_identity(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The operator's own AWS keys, where botocore's default chain finds them."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", CANARY_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CANARY_SECRET)
    profile = tmp_path / "credentials"
    profile.write_text(
        f"[default]\naws_access_key_id = {CANARY_KEY_ID}\naws_secret_access_key = {CANARY_SECRET}\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(profile))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def aws_proxy(aws: AwsBackend) -> Iterator[RecordingProxy]:
    with recording_proxy(aws.endpoint) as started:
        yield started


@pytest.mark.usefixtures("operator_aws_identity")
@pytest.mark.parametrize("which", ["id", "secret", "both"])
@pytest.mark.parametrize(("value", "why"), BAD_VALUES)
def test_an_aws_store_with_an_unusable_key_is_refused_and_moto_never_sees_the_operators_key(
    aws: AwsBackend, aws_proxy: RecordingProxy, which: str, value: bytes | None, why: str
) -> None:
    secrets = dict(aws.credentials().secrets)
    for key in ("id", "secret") if which == "both" else (which,):
        secrets = dict(with_value(secrets, ("aws-creds", key), value).secrets)
    credentials = StaticCredentials(secrets=secrets)
    config = dict(aws.provider_config(aws_proxy.url))
    error = refusal("aws", config, credentials)
    assert CANARY_KEY_ID not in aws_proxy.access_keys()
    assert aws_proxy.requests() == 0
    field = "secretAccessKey" if which == "secret" else "accessKeyId"
    assert_refused(error, f"spec.provider.aws.auth.secretRef.{field}", why)


@pytest.mark.usefixtures("operator_aws_identity")
def test_an_aws_store_with_good_keys_signs_with_them_and_never_with_the_operators(
    aws: AwsBackend, aws_proxy: RecordingProxy
) -> None:
    async def scenario() -> None:
        client = await connect("aws", dict(aws.provider_config(aws_proxy.url)), aws.credentials())
        try:
            await client.validate()
        finally:
            await client.close()

    asyncio.run(scenario())
    assert set(aws_proxy.access_keys()) == {aws.access_key[0]}


@pytest.mark.usefixtures("operator_aws_identity")
def test_a_cluster_store_without_auth_is_the_only_one_that_uses_the_operators_chain(
    aws: AwsBackend, aws_proxy: RecordingProxy
) -> None:
    config = {"region": "us-east-1", "endpoint": aws_proxy.url}

    async def scenario() -> None:
        client = await connect("aws", config, StaticCredentials(), CLUSTER)
        try:
            await client.validate()  # moto refuses the canary: it is not a key moto issued
        finally:
            await client.close()

    with pytest.raises(VaultsyncError):
        asyncio.run(scenario())
    assert set(aws_proxy.access_keys()) == {CANARY_KEY_ID}
    assert_refused(refusal("aws", config, StaticCredentials()), "spec.provider.aws.auth", "required")


def test_aws_web_identity_asks_for_the_sts_audience_unless_the_store_names_one(aws: AwsBackend) -> None:
    config = {**aws.web_identity_config(), "endpoint": UNREACHABLE}
    credentials = aws.credentials()
    with pytest.raises(ProviderError):  # nothing listens: the token was requested all the same
        asyncio.run(connect("aws", config, credentials))
    assert credentials.requests == [TokenRequest("app", ("sts.amazonaws.com",))]


# Vault ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vault() -> Iterator[VaultServer]:
    server = start_dev_server(audit=True)
    try:
        server.request("POST", "sys/auth/approle", {"type": "approle"})
        yield server
    finally:
        server.close()


def audited_paths(server: VaultServer, since: int) -> list[str]:
    import json

    with server.audit_log.open("rb") as log:
        log.seek(since)
        entries = [json.loads(line) for line in log if line.strip()]
    return [e["request"]["path"] for e in entries if e.get("type") == "request"]


def audit_mark(server: VaultServer) -> int:
    return server.audit_log.stat().st_size if server.audit_log.exists() else 0


@pytest.mark.parametrize(("value", "why"), BAD_VALUES)
@pytest.mark.parametrize("method", ["token", "appRole"])
def test_a_vault_store_with_an_unusable_credential_is_refused_before_any_request(
    vault: VaultServer, monkeypatch: pytest.MonkeyPatch, method: str, value: bytes | None, why: str
) -> None:
    monkeypatch.setenv("VAULT_TOKEN", vault.root_token)  # the operator's own token, if it had one
    auth: dict[str, Any] = (
        {"token": {"secretRef": {"name": "vault-creds", "key": "token"}}}
        if method == "token"
        else {"appRole": {"roleId": "r", "secretRef": {"name": "vault-creds", "key": "token"}}}
    )
    mark = audit_mark(vault)
    error = refusal(
        "vault", {"server": vault.url, "auth": auth}, with_value({}, ("vault-creds", "token"), value)
    )
    assert audited_paths(vault, mark) == []
    assert_refused(error, f"spec.provider.vault.auth.{method}.secretRef", why)
    assert audited_paths(vault, mark) == []


def test_vault_kubernetes_login_asks_for_the_vault_audience_unless_the_store_names_one() -> None:
    credentials = StaticCredentials(tokens={"app": "jwt-of-app", OPERATOR: "jwt-of-operator"})

    def login(service_account: dict[str, Any] | None, store: StoreContext) -> None:
        kube: dict[str, Any] = {"role": "r"}
        if service_account is not None:
            kube["serviceAccountRef"] = service_account
        config = {"server": UNREACHABLE, "auth": {"kubernetes": kube}}
        with pytest.raises(ProviderError):  # nothing listens: the token was requested all the same
            asyncio.run(connect("vault", config, credentials, store))

    login({"name": "app"}, TENANT)
    login({"name": "app", "audiences": ["my-vault"]}, TENANT)
    login(None, CLUSTER)  # the operator's own ServiceAccount, through a TokenRequest
    assert credentials.requests == [
        TokenRequest("app", ("vault",)),
        TokenRequest("app", ("my-vault",)),
        TokenRequest(OPERATOR, ("vault",)),
    ]


def test_a_key_outside_the_policy_is_permission_denied_and_the_shared_client_keeps_its_token(
    vault: VaultServer,
) -> None:
    """A ClusterSecretStore's client serves many namespaces: one key's 403 or 404 concerns the
    ExternalSecret that asked; the client neither logs in again nor revokes its token."""
    vault.request(
        "PUT",
        "sys/policies/acl/shared-allowed",
        {"policy": 'path "secret/data/allowed/*" { capabilities = ["read"] }'},
    )
    vault.request(
        "POST", "auth/approle/role/shared", {"token_policies": ["shared-allowed"], "token_ttl": "1h"}
    )
    role_id = vault.request("GET", "auth/approle/role/shared/role-id")["data"]["role_id"]
    secret_id = vault.request("POST", "auth/approle/role/shared/secret-id")["data"]["secret_id"]
    vault.request("POST", "secret/data/allowed/db", {"data": {"password": "pw-allowed"}})
    vault.request("POST", "secret/data/forbidden/db", {"data": {"password": "pw-forbidden"}})
    config = {
        "server": vault.url,
        "auth": {"appRole": {"roleId": role_id, "secretRef": {"name": "ar", "key": "id"}}},
    }
    credentials = StaticCredentials(secrets={("ar", "id"): secret_id.encode()})

    async def scenario() -> tuple[VaultsyncError, VaultsyncError, bytes, int, list[str]]:
        client = await connect("vault", config, credentials, CLUSTER)
        assert isinstance(client, VaultClient)
        mark = audit_mark(vault)
        try:
            with pytest.raises(PermissionDenied) as denied:
                await client.get_secret(RemoteRef("forbidden/db"))
            with pytest.raises(VaultsyncError) as missing:
                await client.get_secret(RemoteRef("allowed/nothing-here"))
            value = (await client.get_secret(RemoteRef("allowed/db"))).value
            return denied.value, missing.value, value, client.logins, audited_paths(vault, mark)
        finally:
            await client.close()

    denied, missing, value, logins, paths = asyncio.run(scenario())
    assert "'forbidden/db'" in denied.message and "pw-forbidden" not in denied.message
    assert missing.reason.value == "KeyNotFound"
    assert value == b'{"password":"pw-allowed"}'
    assert logins == 1
    assert "auth/approle/login" not in paths and "auth/token/revoke-self" not in paths


# Azure ---------------------------------------------------------------------------------

AZURE_BASE = {"vaultUrl": "https://127.0.0.1:9", "tenantId": "contoso.onmicrosoft.com"}


@pytest.mark.parametrize(("value", "why"), BAD_VALUES)
def test_an_azure_store_with_an_unusable_client_secret_is_refused_naming_the_field(
    monkeypatch: pytest.MonkeyPatch, value: bytes | None, why: str
) -> None:
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "canary-operator-client-secret")
    auth = {"clientSecret": {"clientId": "app", "secretRef": {"name": "azure-creds", "key": "secret"}}}
    error = refusal("azurekv", {**AZURE_BASE, "auth": auth}, with_value({}, ("azure-creds", "secret"), value))
    assert_refused(error, "spec.provider.azurekv.auth.clientSecret.secretRef", why)


def test_a_namespaced_azure_store_may_not_use_the_managed_identity() -> None:
    error = refusal("azurekv", {**AZURE_BASE, "auth": {"managedIdentity": {}}}, StaticCredentials())
    assert_refused(error, "spec.provider.azurekv.auth.managedIdentity", "ClusterSecretStore")


def test_a_key_denied_after_the_token_was_replaced_is_still_only_permission_denied(
    vault: VaultServer,
) -> None:
    """Vault revoked the store's token: one new login, and the retried read's 403 is the policy's."""
    vault.request(
        "PUT",
        "sys/policies/acl/relogin-allowed",
        {"policy": 'path "secret/data/allowed/*" { capabilities = ["read"] }'},
    )
    vault.request(
        "POST", "auth/approle/role/relogin", {"token_policies": ["relogin-allowed"], "token_ttl": "1h"}
    )
    role_id = vault.request("GET", "auth/approle/role/relogin/role-id")["data"]["role_id"]
    secret_id = vault.request("POST", "auth/approle/role/relogin/secret-id")["data"]["secret_id"]
    vault.request("POST", "secret/data/forbidden/other", {"data": {"password": "pw-forbidden"}})
    config = {
        "server": vault.url,
        "auth": {"appRole": {"roleId": role_id, "secretRef": {"name": "ar", "key": "id"}}},
    }
    credentials = StaticCredentials(secrets={("ar", "id"): secret_id.encode()})

    async def scenario() -> int:
        client = await connect("vault", config, credentials, CLUSTER)
        assert isinstance(client, VaultClient)
        try:
            vault.request("PUT", "sys/leases/revoke-prefix/auth/approle/login", {})
            with pytest.raises(PermissionDenied):
                await client.get_secret(RemoteRef("forbidden/other"))
            return client.logins
        finally:
            await client.close()

    assert asyncio.run(scenario()) == 2
