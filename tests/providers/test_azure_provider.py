"""What the azurekv provider does beyond the shared contract, against the local Key Vault emulator.

`test_contract.py` already holds this provider to the common cases (value and version, pins,
new versions, missing keys, many keys, wrong credentials, a stopped and restarted server, no
value in any message). Here: Azure's auth methods (client secret, workload identity, managed
identity and who may use it), its name rules, TLS verification and the config errors, each
naming the field to fix. Every error is checked not to carry a secret or a credential.
"""

from __future__ import annotations

import base64
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import pytest

from tests.providers.backends import azure as backend_module
from tests.providers.backends.azure import AzureBackend
from tests.providers.backends.credentials import StaticCredentials
from tests.providers.servers.azure import AzureEmulator, free_port
from tests.providers.test_contract import document
from vaultsync.errors import (
    AuthenticationError,
    CredentialNotFound,
    InvalidSpec,
    InvalidStoreConfig,
    PermissionDenied,
    ProviderError,
    SecretNotFound,
)
from vaultsync.providers import PROVIDERS
from vaultsync.providers.azure import TOKEN_EXCHANGE_AUDIENCE
from vaultsync.providers.base import FindQuery, RemoteRef, RemoteValue, SecretsClient, StoreContext

PROVIDER = PROVIDERS["azurekv"]
NAMESPACED = StoreContext(kind="SecretStore", name="team-store", namespace=backend_module.NAMESPACE)
CLUSTER = StoreContext(kind="ClusterSecretStore", name="platform-store", namespace=None)
CREDENTIAL_MATERIAL = (
    backend_module.READER_SECRET,
    backend_module.WRITER_SECRET,
    backend_module.NO_ACCESS_SECRET,
    backend_module.WRONG_SECRET,
)


@asynccontextmanager
async def connected(
    azure: AzureBackend, config: Mapping[str, Any], store: StoreContext = NAMESPACED
) -> AsyncIterator[SecretsClient]:
    client = await PROVIDER.new_client(PROVIDER.parse_config(config), store, azure.credentials())
    try:
        yield client
    finally:
        await client.close()


def secret() -> str:
    return f"s3cr3t-{uuid.uuid4().hex}"


def key() -> str:
    return f"azure-{uuid.uuid4().hex[:12]}"


def assert_safe(error: BaseException, *values: str) -> None:
    """Neither the secret values nor any credential appears in the error."""
    text = f"{error} {error!r} {getattr(error, 'message', '')}"
    for value in (*values, *CREDENTIAL_MATERIAL):
        assert value not in text, "a secret or credential leaked into an error message"


# -- names and versions ---------------------------------------------------------------------


async def test_a_slash_in_the_key_reads_the_secret_named_with_a_dash(azure: AzureBackend) -> None:
    name, value = key(), secret()
    version = azure.write(f"{name}-db", value)
    async with connected(azure, azure.provider_config()) as client:
        assert await client.get_secret(RemoteRef(f"{name}/db")) == RemoteValue(value.encode(), version)


async def test_a_key_azure_cannot_name_is_invalid_spec_with_a_valid_spelling(
    azure: AzureBackend,
) -> None:
    async with connected(azure, azure.provider_config()) as client:
        with pytest.raises(InvalidSpec) as info:
            await client.get_secret(RemoteRef("production/db_password.json"))
    assert "'production/db_password.json'" in info.value.message
    assert "'production-db-password-json'" in info.value.message


async def test_a_malformed_version_pin_is_invalid_spec_and_never_reaches_the_url(
    azure: AzureBackend,
) -> None:
    async with connected(azure, azure.provider_config()) as client:
        with pytest.raises(InvalidSpec) as info:
            await client.get_secret(RemoteRef(key(), "../../other-secret"))
    assert "version" in info.value.message


async def test_a_pinned_version_that_does_not_exist_is_secret_not_found(azure: AzureBackend) -> None:
    name = key()
    azure.write(name, secret())
    missing = uuid.uuid4().hex
    async with connected(azure, azure.provider_config()) as client:
        with pytest.raises(SecretNotFound) as info:
            await client.get_secret(RemoteRef(name, missing))
    assert name in info.value.message and missing in info.value.message


# -- client secret ----------------------------------------------------------------------------


async def test_a_wrong_client_secret_is_refused_by_entra_id_with_its_code(azure: AzureBackend) -> None:
    async with connected(azure, azure.bad_credentials_config()) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.get_secret(RemoteRef(key()))
    message = info.value.message
    assert "AADSTS7000215" in message
    assert backend_module.READER in message
    assert "spec.provider.azurekv.auth" in message
    assert_safe(info.value)


@pytest.mark.parametrize(
    ("stored", "error"),
    [({}, CredentialNotFound), ({("azure-creds", "client-secret"): b"\n"}, InvalidStoreConfig)],
)
async def test_a_missing_or_empty_client_secret_names_the_secret_ref(
    azure: AzureBackend, stored: dict[tuple[str, str], bytes], error: type[Exception]
) -> None:
    config = PROVIDER.parse_config(azure.provider_config())
    with pytest.raises(error) as info:
        await PROVIDER.new_client(config, NAMESPACED, StaticCredentials(secrets=stored))
    assert "spec.provider.azurekv.auth.clientSecret.secretRef" in str(info.value)


async def test_an_app_the_vault_does_not_permit_is_told_which_role_it_needs(
    azure: AzureBackend,
) -> None:
    """Entra ID issued the token, so a 403 is the vault's policy, not a refused login: it is
    `PermissionDenied`, which never makes the operator drop a client other ExternalSecrets share."""
    name, value = key(), secret()
    azure.write(name, value)
    async with connected(azure, azure.no_access_config()) as client:
        with pytest.raises(PermissionDenied) as info:
            await client.get_secret(RemoteRef(name))
    assert "Key Vault Secrets User" in info.value.message
    assert str(NAMESPACED) in info.value.message
    assert_safe(info.value, value)


async def test_an_unknown_tenant_is_refused_naming_the_tenant_field(azure: AzureBackend) -> None:
    config = {**azure.provider_config(), "tenantId": "00000000-0000-0000-0000-000000000000"}
    async with connected(azure, config) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.validate()
    assert "spec.provider.azurekv.tenantId" in info.value.message
    assert_safe(info.value)


# -- workload identity ------------------------------------------------------------------------


async def test_workload_identity_exchanges_a_service_account_token_for_the_app(
    azure: AzureBackend,
) -> None:
    name, value = key(), secret()
    version = azure.write(name, value)
    credentials = azure.credentials()
    asked = len(credentials.requests)
    async with connected(azure, azure.workload_identity_config()) as client:
        assert await client.get_secret(RemoteRef(name)) == RemoteValue(value.encode(), version)
    request = credentials.requests[asked]
    assert request.service_account == backend_module.SERVICE_ACCOUNT
    assert request.audiences == (TOKEN_EXCHANGE_AUDIENCE,)


async def test_many_reads_at_once_share_one_service_account_token(azure: AzureBackend) -> None:
    names = [key() for _ in range(12)]
    for name in names:
        azure.write(name, secret())
    credentials = azure.credentials()
    asked = len(credentials.requests)
    async with connected(azure, azure.workload_identity_config()) as client:
        results = await client.get_secrets([RemoteRef(name) for name in names])
    assert all(isinstance(result, RemoteValue) for result in results.values())
    assert len(credentials.requests) == asked + 1


async def test_workload_identity_of_a_service_account_not_federated_is_refused(
    azure: AzureBackend,
) -> None:
    config = azure.workload_identity_config(backend_module.OTHER_SERVICE_ACCOUNT)
    async with connected(azure, config) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.validate()
    assert "AADSTS70021" in info.value.message
    assert backend_module.OTHER_SERVICE_ACCOUNT in info.value.message
    tokens = azure.credentials().tokens.values()
    assert_safe(info.value, *tokens)


# -- managed identity -------------------------------------------------------------------------


async def test_managed_identity_is_refused_to_a_namespaced_store_naming_the_field(
    azure: AzureBackend,
) -> None:
    with pytest.raises(InvalidStoreConfig) as info:
        await PROVIDER.new_client(
            PROVIDER.parse_config(azure.managed_identity_config()), NAMESPACED, azure.credentials()
        )
    assert "spec.provider.azurekv.auth.managedIdentity" in info.value.message
    assert "ClusterSecretStore" in info.value.message


async def test_a_cluster_store_reads_with_the_operators_managed_identity(
    azure: AzureBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", azure.emulator.url)
    name, value = key(), secret()
    version = azure.write(name, value)
    async with connected(azure, azure.managed_identity_config(), CLUSTER) as client:
        assert await client.get_secret(RemoteRef(name)) == RemoteValue(value.encode(), version)


# -- transport --------------------------------------------------------------------------------


async def test_tls_is_verified_so_a_store_without_the_emulators_ca_cannot_connect(
    azure: AzureBackend,
) -> None:
    config = {k: v for k, v in azure.provider_config().items() if k != "caBundle"}
    async with connected(azure, config) as client:
        with pytest.raises(ProviderError) as info:
            await client.validate()
    assert not isinstance(info.value, AuthenticationError)
    assert "not trusted" in info.value.message
    assert "spec.provider.azurekv.caBundle" in info.value.message


async def test_an_unreachable_authority_is_a_provider_error_not_refused_credentials(
    azure: AzureBackend,
) -> None:
    config = {**azure.provider_config(), "authorityHost": f"https://127.0.0.1:{free_port()}"}
    async with connected(azure, config) as client:
        with pytest.raises(ProviderError) as info:
            await client.validate()
    assert not isinstance(info.value, AuthenticationError), info.value.message
    assert "cannot reach" in info.value.message
    assert_safe(info.value)


async def test_challenge_resource_verification_is_on_unless_the_store_turns_it_off(
    azure: AzureBackend,
) -> None:
    config = {**azure.provider_config(), "verifyChallengeResource": True}
    async with connected(azure, config) as client:
        with pytest.raises(InvalidStoreConfig) as info:
            await client.validate()
    assert "spec.provider.azurekv.verifyChallengeResource" in info.value.message


# -- config -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"vaultUrl": "http://127.0.0.1:1"}, "spec.provider.azurekv.vaultUrl"),
        ({"authorityHost": "http://login.example"}, "spec.provider.azurekv.authorityHost"),
        ({"caBundle": "not base64 pem"}, "spec.provider.azurekv.caBundle"),
        ({"tenantId": ""}, "spec.provider.azurekv: "),
        ({"tenantId": "contoso/../other"}, "spec.provider.azurekv.tenantId"),
        ({"auth": {}}, "spec.provider.azurekv.auth"),
        (
            {"auth": {"managedIdentity": {}, "clientSecret": {"clientId": "a", "secretRef": {}}}},
            "spec.provider.azurekv.auth",
        ),
        ({"vaultURL": "https://x.vault.azure.net"}, "spec.provider.azurekv.vaultURL"),
    ],
)
def test_a_config_error_names_the_field(azure: AzureBackend, change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidStoreConfig) as info:
        PROVIDER.parse_config({**azure.provider_config(), **change})
    assert field in info.value.message


# -- change detection -----------------------------------------------------------------------


HELD = [RemoteRef(f"page-{i}") for i in range(26)]
# Both features that list the vault: change detection and dataFrom.find share one listing.
LISTINGS: dict[str, Callable[[SecretsClient], Awaitable[object]]] = {
    "change detection": lambda client: client.stamps(HELD[:1], HELD[1:]),
    "dataFrom.find": lambda client: client.list_keys(FindQuery(), limit=100),
}


@pytest.mark.parametrize("listing", LISTINGS)
async def test_a_listing_page_that_points_to_another_address_is_not_followed(listing: str) -> None:
    """A vault is whatever a tenant names: its listing's next-page link must not steer the
    client (and its bearer token) to another address, which no egress check would see when
    the link names an IP address; neither for change detection nor for a find."""
    elsewhere = socket.socket()
    elsewhere.bind(("127.0.0.1", 0))
    elsewhere.listen()
    elsewhere.setblocking(False)
    reader_secret, writer_secret = "hostile-reader-secret", "hostile-writer-secret"
    hostile = AzureEmulator(
        identities={
            "reader": {"secret": reader_secret, "permissions": ["get", "list"]},
            "writer": {"secret": writer_secret, "permissions": ["set"]},
        },
        next_link_origin=f"https://127.0.0.1:{elsewhere.getsockname()[1]}",
    )
    hostile.start()
    try:
        for i in range(26):  # a second page
            hostile.set_secret("writer", writer_secret, f"page-{i}", document())
        config = {
            "vaultUrl": hostile.url,
            "tenantId": hostile.tenant_id,
            "authorityHost": hostile.url,
            "caBundle": base64.b64encode(hostile.ca_pem).decode(),
            "verifyChallengeResource": False,
            "auth": {"clientSecret": {"clientId": "reader", "secretRef": {"name": "c", "key": "k"}}},
        }
        credentials = StaticCredentials(secrets={("c", "k"): reader_secret.encode()})
        client = await PROVIDER.new_client(PROVIDER.parse_config(config), NAMESPACED, credentials)
        try:
            with pytest.raises(ProviderError, match="another address"):
                await LISTINGS[listing](client)
        finally:
            await client.close()
        with pytest.raises(BlockingIOError):
            elsewhere.accept()  # nothing connected there
        assert hostile.counts()["calls"].get("list") == 1
    finally:
        hostile.remove()
        elsewhere.close()
