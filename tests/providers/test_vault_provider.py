"""The vault provider against a real OpenBao dev server: KV engines, logins, tokens, errors.

What the shared contract suite cannot see is checked here: KV v1 next to KV v2, version pins,
the token life cycle (one login, renewal before expiry, a new login only when needed),
metadata-first change checks, TLS with a caBundle, the namespace header, and every failure
turned into a vaultsync error that names keys and fields but never a value. Request and
login counts come from Vault's own audit log, not from the client under test.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client

from tests.env.kube import Cluster, KubeApi, configuration
from tests.providers.backends.credentials import StaticCredentials
from tests.providers.backends.vault import start_backend
from tests.providers.servers.vault import VaultServer, free_port, start_dev_server
from vaultsync.credentials import StoreCredentials
from vaultsync.errors import (
    AuthenticationError,
    CredentialNotFound,
    InvalidSpec,
    InvalidStoreConfig,
    PermissionDenied,
    ProviderError,
    RetryableError,
    SecretNotFound,
    VaultsyncError,
)
from vaultsync.kube import Kube
from vaultsync.providers import PROVIDERS
from vaultsync.providers.base import Credentials, RemoteRef, StoreContext
from vaultsync.providers.vault import VaultClient, VaultProvider

T = TypeVar("T")

PROVIDER = VaultProvider()
STORE = StoreContext(kind="SecretStore", name="vault", namespace="team-a")
CLUSTER_STORE = StoreContext(kind="ClusterSecretStore", name="vault", namespace=None)
READ_ALL = "vaultsync-read-all"
SECRET_ID_REF = {"name": "approle", "key": "secret-id"}
TOKEN_REF = {"name": "vault-token", "key": "token"}


class Audit:
    """Vault's file audit device: every request the server saw, in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0

    def mark(self) -> None:
        """Forget what was logged so far; `requests()` then counts only what follows."""
        self._offset = self.path.stat().st_size if self.path.exists() else 0

    def requests(self) -> list[dict[str, Any]]:
        with self.path.open("rb") as log:
            log.seek(self._offset)
            entries = [json.loads(line) for line in log if line.strip()]
        return [e["request"] for e in entries if e.get("type") == "request"]

    def paths(self) -> list[str]:
        return [r["path"] for r in self.requests()]

    def reads(self, path: str) -> int:
        return sum(1 for r in self.requests() if r["path"] == path and r["operation"] == "read")


@pytest.fixture(scope="module")
def vault() -> Iterator[VaultServer]:
    server = start_dev_server(audit=True)
    try:
        policy = "\n".join(
            f'path "{p}" {{ capabilities = ["read"] }}'
            for p in ("secret/data/*", "secret/metadata/*", "kv1/*")
        )
        server.request("PUT", f"sys/policies/acl/{READ_ALL}", {"policy": policy})
        server.request("POST", "sys/mounts/kv1", {"type": "kv", "options": {"version": "1"}})
        server.request("POST", "sys/auth/approle", {"type": "approle"})
        yield server
    finally:
        server.close()


@pytest.fixture
def audit(vault: VaultServer) -> Audit:
    found = Audit(vault.audit_log)
    found.mark()
    return found


def run(scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(scenario())


def put(server: VaultServer, key: str, data: Mapping[str, Any], namespace: str = "") -> str:
    body = server.request("POST", f"secret/data/{key}", {"data": dict(data)}, namespace=namespace)
    return str(body["data"]["version"])


def approle(server: VaultServer, role: str, **options: Any) -> tuple[str, str]:
    """An AppRole with `options` (token_ttl, token_type...); its role id and a secret id."""
    settings = {"token_policies": [READ_ALL], **options}
    server.request("POST", f"auth/approle/role/{role}", settings)
    role_id = server.request("GET", f"auth/approle/role/{role}/role-id")["data"]["role_id"]
    secret_id = server.request("POST", f"auth/approle/role/{role}/secret-id")["data"]["secret_id"]
    return str(role_id), str(secret_id)


def token_config(server: VaultServer, **extra: Any) -> dict[str, Any]:
    return {"server": server.url, "auth": {"token": {"secretRef": TOKEN_REF}}, **extra}


def approle_config(server: VaultServer, role_id: str, **extra: Any) -> dict[str, Any]:
    auth = {"appRole": {"roleId": role_id, "secretRef": SECRET_ID_REF}}
    return {"server": server.url, "auth": auth, **extra}


def token_credentials(token: str) -> StaticCredentials:
    return StaticCredentials(secrets={("vault-token", "token"): token.encode()})


def secret_id_credentials(secret_id: str) -> StaticCredentials:
    return StaticCredentials(secrets={("approle", "secret-id"): secret_id.encode()})


async def connect(
    raw: Mapping[str, Any], credentials: Credentials, store: StoreContext = STORE
) -> VaultClient:
    client = await PROVIDER.new_client(PROVIDER.parse_config(raw), store, credentials)
    assert isinstance(client, VaultClient)
    return client


def login_count(audit: Audit, mount: str = "approle") -> int:
    return audit.paths().count(f"auth/{mount}/login")


def test_the_vault_provider_is_registered() -> None:
    assert isinstance(PROVIDERS["vault"], VaultProvider)


# -- reading KV ---------------------------------------------------------------------------


def test_a_kv_v2_secret_reads_as_its_data_map_in_json_with_its_version(
    vault: VaultServer,
) -> None:
    version = put(vault, "shop/db", {"username": "app", "password": "pw-v2-read"})

    async def scenario() -> tuple[bytes, str]:
        client = await connect(token_config(vault), token_credentials(vault.root_token))
        try:
            got = await client.get_secret(RemoteRef("shop/db"))
        finally:
            await client.close()
        return got.value, got.version

    value, read_version = run(scenario)
    assert json.loads(value) == {"username": "app", "password": "pw-v2-read"}
    assert read_version == version


def test_nested_paths_and_surrounding_slashes_address_the_same_secret(vault: VaultServer) -> None:
    put(vault, "team/app/deep/db", {"k": "nested"})

    async def scenario() -> list[bytes]:
        client = await connect(token_config(vault), token_credentials(vault.root_token))
        try:
            refs = (RemoteRef("team/app/deep/db"), RemoteRef("/team/app/deep/db/"))
            return [(await client.get_secret(r)).value for r in refs]
        finally:
            await client.close()

    assert run(scenario) == [b'{"k":"nested"}'] * 2


def test_a_version_pin_reads_that_kv_v2_version_and_latest_reads_the_newest(
    vault: VaultServer,
) -> None:
    first = put(vault, "pinned", {"v": "one"})
    second = put(vault, "pinned", {"v": "two"})

    async def scenario() -> tuple[str, str, str, str]:
        client = await connect(token_config(vault), token_credentials(vault.root_token))
        try:
            old = await client.get_secret(RemoteRef("pinned", version=first))
            new = await client.get_secret(RemoteRef("pinned"))
        finally:
            await client.close()
        return old.value.decode(), old.version, new.value.decode(), new.version

    assert run(scenario) == ('{"v":"one"}', first, '{"v":"two"}', second)


def test_missing_keys_missing_versions_and_deleted_versions_are_secret_not_found(
    vault: VaultServer,
) -> None:
    put(vault, "deleted", {"v": "gone"})
    vault.request("DELETE", "secret/data/deleted")

    async def scenario() -> list[VaultsyncError]:
        client = await connect(token_config(vault), token_credentials(vault.root_token))
        errors: list[VaultsyncError] = []
        try:
            for ref in (RemoteRef("no/such/key"), RemoteRef("pinned", "99"), RemoteRef("deleted")):
                with pytest.raises(SecretNotFound) as caught:
                    await client.get_secret(ref)
                errors.append(caught.value)
            assert await client.stamps([RemoteRef("deleted")], []) == {RemoteRef("deleted"): None}
        finally:
            await client.close()
        return errors

    missing, missing_version, deleted = run(scenario)
    assert "'no/such/key'" in missing.message and "mount 'secret'" in missing.message
    assert "version 99" in missing_version.message
    assert "'deleted'" in deleted.message


def test_a_version_pin_that_is_not_a_kv_v2_version_number_is_invalid_spec(
    vault: VaultServer,
) -> None:
    async def scenario() -> InvalidSpec:
        client = await connect(token_config(vault), token_credentials(vault.root_token))
        try:
            with pytest.raises(InvalidSpec) as caught:
                await client.get_secret(RemoteRef("pinned", version="AWSCURRENT"))
        finally:
            await client.close()
        return caught.value

    error = run(scenario)
    assert error.message.startswith("remoteRef.version:")


def test_a_kv_v1_mount_reads_its_data_map_and_refuses_version_pins(vault: VaultServer) -> None:
    vault.request("POST", "kv1/legacy/app", {"user": "old", "password": "pw-v1"})

    async def scenario() -> tuple[bytes, str, object, InvalidSpec]:
        config = token_config(vault, path="kv1", version="v1")
        client = await connect(config, token_credentials(vault.root_token))
        try:
            got = await client.get_secret(RemoteRef("legacy/app"))
            current = await client.stamps([RemoteRef("legacy/app")], [])
            with pytest.raises(InvalidSpec) as caught:
                await client.get_secret(RemoteRef("legacy/app", version="1"))
            with pytest.raises(SecretNotFound):
                await client.get_secret(RemoteRef("legacy/missing"))
        finally:
            await client.close()
        return got.value, got.version, current, caught.value

    value, version, current, pinned = run(scenario)
    assert json.loads(value) == {"user": "old", "password": "pw-v1"}
    assert (version, current) == ("", None)
    assert "KV v1" in pinned.message and pinned.message.startswith("remoteRef.version:")


def test_an_unchanged_kv_v2_secret_is_checked_with_one_metadata_request_and_no_data_read(
    vault: VaultServer, audit: Audit
) -> None:
    put(vault, "watched", {"v": "1"})
    latest = put(vault, "watched", {"v": "2"})

    async def scenario() -> tuple[str, str | None]:
        client = await connect(token_config(vault), token_credentials(vault.root_token))
        try:
            read = await client.get_secret(RemoteRef("watched"))
            audit.mark()  # after the login lookup and the read
            stamps = await client.stamps([RemoteRef("watched")], [RemoteRef("other")]) or {}
            return read.stamp, stamps[RemoteRef("watched")]
        finally:
            await client.close()

    read_stamp, stamp = run(scenario)
    assert stamp == read_stamp and stamp.startswith(f"{latest}@")
    paths = audit.paths()
    assert paths.count("secret/metadata/watched") == 1
    assert "secret/data/watched" not in paths


def test_a_pinned_ref_is_stamped_as_its_read_is(vault: VaultServer) -> None:
    put(vault, "watched", {"v": "1"})
    put(vault, "watched", {"v": "2"})

    async def scenario() -> tuple[str, str | None]:
        client = await connect(token_config(vault), token_credentials(vault.root_token))
        try:
            pinned = RemoteRef("watched", version="1")
            read = await client.get_secret(pinned)
            return read.stamp, (await client.stamps([pinned], []) or {})[pinned]
        finally:
            await client.close()

    read_stamp, stamp = run(scenario)
    assert stamp == read_stamp and stamp.startswith("1@")


# -- logins and tokens --------------------------------------------------------------------


def test_an_approle_client_logs_in_once_and_reuses_its_token_for_every_read(
    vault: VaultServer, audit: Audit
) -> None:
    role_id, secret_id = approle(vault, "reuse", token_ttl="1h")
    put(vault, "reuse/a", {"v": "a"})

    async def scenario() -> int:
        client = await connect(approle_config(vault, role_id), secret_id_credentials(secret_id))
        try:
            await client.validate()
            for _ in range(5):
                await client.get_secret(RemoteRef("reuse/a"))
            await asyncio.gather(*(client.get_secret(RemoteRef("reuse/a")) for _ in range(5)))
            return client.logins
        finally:
            await client.close()

    assert run(scenario) == 1
    assert login_count(audit) == 1
    assert audit.reads("secret/data/reuse/a") == 10


def test_a_renewable_token_is_renewed_after_two_thirds_of_its_ttl_without_a_new_login(
    vault: VaultServer, audit: Audit
) -> None:
    # A 6s lease leaves ~2s between renewal (at 4s) and expiry, for a slow machine.
    role_id, secret_id = approle(vault, "renew", token_ttl="6s", token_max_ttl="1h")
    put(vault, "renew/a", {"v": "a"})

    async def scenario() -> int:
        client = await connect(approle_config(vault, role_id), secret_id_credentials(secret_id))
        try:
            await client.get_secret(RemoteRef("renew/a"))
            await asyncio.sleep(4.3)  # past 2/3 of 6s, before expiry
            await client.get_secret(RemoteRef("renew/a"))
            await asyncio.sleep(4.3)  # the renewed lease is 6s again
            await client.get_secret(RemoteRef("renew/a"))
            return client.logins
        finally:
            await client.close()

    assert run(scenario) == 1
    assert login_count(audit) == 1
    assert audit.paths().count("auth/token/renew-self") == 2


def test_a_non_renewable_token_is_replaced_by_a_new_login_before_it_expires(
    vault: VaultServer, audit: Audit
) -> None:
    role_id, secret_id = approle(vault, "batch", token_ttl="3s", token_type="batch", secret_id_num_uses=0)
    put(vault, "batch/a", {"v": "a"})

    async def scenario() -> int:
        client = await connect(approle_config(vault, role_id), secret_id_credentials(secret_id))
        try:
            await client.get_secret(RemoteRef("batch/a"))
            await client.get_secret(RemoteRef("batch/a"))
            await asyncio.sleep(2.3)
            await client.get_secret(RemoteRef("batch/a"))
            return client.logins
        finally:
            await client.close()

    assert run(scenario) == 2
    assert login_count(audit) == 2
    assert "auth/token/renew-self" not in audit.paths()


def test_a_revoked_token_is_replaced_by_one_new_login_shared_by_concurrent_reads(
    vault: VaultServer, audit: Audit
) -> None:
    role_id, secret_id = approle(vault, "revoked", token_ttl="1h")
    put(vault, "revoked/a", {"v": "a"})

    async def scenario() -> tuple[bytes, int]:
        client = await connect(approle_config(vault, role_id), secret_id_credentials(secret_id))
        try:
            await client.get_secret(RemoteRef("revoked/a"))
            vault.request("PUT", "sys/leases/revoke-prefix/auth/approle/login", {})
            reads = [client.get_secret(RemoteRef("revoked/a")) for _ in range(4)]
            values = {got.value for got in await asyncio.gather(*reads)}
            return values.pop(), client.logins
        finally:
            await client.close()

    assert run(scenario) == (b'{"v":"a"}', 2)
    assert login_count(audit) == 2


def test_a_policy_that_denies_the_path_is_permission_denied_without_a_new_login(
    vault: VaultServer, audit: Audit
) -> None:
    vault.request(
        "PUT",
        "sys/policies/acl/only-allowed",
        {"policy": 'path "secret/data/allowed/*" { capabilities = ["read"] }'},
    )
    role_id, secret_id = approle(vault, "narrow", token_policies=["only-allowed"])
    put(vault, "forbidden/x", {"v": "pw-denied"})

    async def scenario() -> tuple[PermissionDenied, int]:
        client = await connect(approle_config(vault, role_id), secret_id_credentials(secret_id))
        try:
            with pytest.raises(PermissionDenied) as caught:
                await client.get_secret(RemoteRef("forbidden/x"))
            return caught.value, client.logins
        finally:
            await client.close()

    error, logins = run(scenario)
    assert logins == 1 and login_count(audit) == 1
    assert "permission denied" in error.message
    assert "'forbidden/x'" in error.message and "policy" in error.message
    assert "pw-denied" not in error.message


def test_tokens_a_client_created_are_revoked_when_it_closes(vault: VaultServer, audit: Audit) -> None:
    role_id, secret_id = approle(vault, "closing", token_ttl="1h")

    async def scenario() -> None:
        client = await connect(approle_config(vault, role_id), secret_id_credentials(secret_id))
        await client.close()

    run(scenario)
    assert audit.paths()[-1] == "auth/token/revoke-self"


# -- refusals and failures ----------------------------------------------------------------


def test_a_wrong_token_is_refused_at_connect_with_an_actionable_message(
    vault: VaultServer,
) -> None:
    async def scenario() -> None:
        await connect(token_config(vault), token_credentials("hvs.wrong-token-value"))

    with pytest.raises(AuthenticationError) as caught:
        run(scenario)
    message = caught.value.message
    assert "spec.provider.vault.auth" in message and "token.secretRef" in message
    assert "hvs.wrong-token-value" not in message


def test_a_wrong_approle_secret_id_is_refused_without_showing_it(vault: VaultServer) -> None:
    role_id, _ = approle(vault, "wrong-secret")

    async def scenario() -> None:
        await connect(approle_config(vault, role_id), secret_id_credentials("11111111-2222-3333-4444-5"))

    with pytest.raises(AuthenticationError) as caught:
        run(scenario)
    assert "AppRole login" in caught.value.message
    assert "11111111-2222-3333-4444-5" not in str(caught.value)


def test_a_missing_credential_secret_is_reported_with_its_field(vault: VaultServer) -> None:
    async def scenario() -> None:
        await connect(token_config(vault), StaticCredentials())

    with pytest.raises(CredentialNotFound) as caught:
        run(scenario)
    assert "spec.provider.vault.auth.token.secretRef" in caught.value.message


def test_a_namespaced_store_may_not_log_in_as_the_operators_own_service_account(
    vault: VaultServer,
) -> None:
    raw = {"server": vault.url, "auth": {"kubernetes": {"role": "shop"}}}

    async def scenario() -> None:
        await connect(raw, StaticCredentials(), STORE)

    with pytest.raises(InvalidStoreConfig) as caught:
        run(scenario)
    assert "spec.provider.vault.auth.kubernetes.serviceAccountRef" in caught.value.message
    assert "ClusterSecretStore" in caught.value.message


def test_a_server_that_is_not_listening_is_a_retryable_provider_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    async def scenario() -> None:
        await connect({"server": url, "auth": {"token": {"secretRef": TOKEN_REF}}}, token_credentials("t"))

    with pytest.raises(ProviderError) as caught:
        run(scenario)
    assert isinstance(caught.value, RetryableError) and not isinstance(caught.value, AuthenticationError)
    assert f"cannot reach Vault at {url}" in caught.value.message


def test_reads_fail_while_the_server_is_down_and_recover_when_it_is_back() -> None:
    backend = start_backend()
    try:
        version = backend.write("restart/db", '{"password":"pw-restart"}')
        client_holder: list[VaultClient] = []

        async def connect_and_read() -> str:
            client = await connect(backend.provider_config(), backend.credentials())
            client_holder.append(client)
            return (await client.get_secret(RemoteRef("restart/db"))).version

        async def read() -> str:
            return (await client_holder[0].get_secret(RemoteRef("restart/db"))).version

        async def scenario() -> tuple[str, ProviderError, str]:
            first = await connect_and_read()
            backend.stop()
            with pytest.raises(ProviderError) as caught:
                await read()
            backend.start()
            recovered = await read()
            await client_holder[0].close()
            return first, caught.value, recovered

        first, down, recovered = run(scenario)
    finally:
        backend.close()
    assert first == version == recovered
    assert "cannot reach Vault" in down.message


def test_a_tls_server_is_trusted_through_the_ca_bundle_and_refused_without_it() -> None:
    server = start_dev_server(tls=True)
    try:
        put(server, "tls/a", {"v": "a"})
        ca_bundle = base64.b64encode(server.ca_file.read_bytes()).decode()

        async def scenario() -> tuple[bytes, ProviderError]:
            creds = token_credentials(server.root_token)
            client = await connect(token_config(server, caBundle=ca_bundle), creds)
            try:
                value = (await client.get_secret(RemoteRef("tls/a"))).value
            finally:
                await client.close()
            with pytest.raises(ProviderError) as caught:
                await connect(token_config(server), creds)
            return value, caught.value

        value, untrusted = run(scenario)
    finally:
        server.close()
    assert value == b'{"v":"a"}'
    assert "caBundle" in untrusted.message


def supports_namespaces(server: VaultServer, name: str) -> bool:
    """Creates namespace `name` with a KV v2 mount at secret/; False on a server without them."""
    try:
        server.request("POST", f"sys/namespaces/{name}", {})
    except RuntimeError:
        return False  # Vault OSS: namespaces are a Vault Enterprise feature
    server.request("POST", "sys/mounts/secret", {"type": "kv", "options": {"version": "2"}}, namespace=name)
    return True


def test_the_namespace_is_sent_as_the_x_vault_namespace_header(vault: VaultServer, audit: Audit) -> None:
    vault.request("POST", "sys/config/auditing/request-headers/X-Vault-Namespace", {})
    namespace = "team-header" if supports_namespaces(vault, "team-header") else ""
    put(vault, "ns/a", {"v": "a"}, namespace=namespace)

    async def scenario() -> None:
        client = await connect(
            token_config(vault, namespace="team-header"), token_credentials(vault.root_token)
        )
        try:
            await client.get_secret(RemoteRef("ns/a"))
        finally:
            await client.close()

    run(scenario)
    read = next(r for r in audit.requests() if r["path"].endswith("secret/data/ns/a"))
    assert read["headers"]["x-vault-namespace"] == ["team-header"]


def test_a_store_with_a_namespace_reads_that_namespace_s_secrets(vault: VaultServer) -> None:
    if not supports_namespaces(vault, "team-b"):
        pytest.skip(f"{vault.binary.name} has no namespaces (Vault Enterprise / OpenBao only)")
    put(vault, "shared/name", {"owner": "root"})
    put(vault, "shared/name", {"owner": "team-b"}, namespace="team-b")

    async def read(namespace: str) -> bytes:
        config = token_config(vault, namespace=namespace) if namespace else token_config(vault)
        client = await connect(config, token_credentials(vault.root_token))
        try:
            return (await client.get_secret(RemoteRef("shared/name"))).value
        finally:
            await client.close()

    assert run(lambda: read("team-b")) == b'{"owner":"team-b"}'
    assert run(lambda: read("")) == b'{"owner":"root"}'


# -- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"auth": {}}, "spec.provider.vault.server"),
        ({"server": "vault:8200"}, "spec.provider.vault.server"),
        ({"server": "http://v", "version": "v3"}, "spec.provider.vault.version"),
        ({"server": "http://v", "path": "/"}, "spec.provider.vault.path"),
        ({"server": "http://v", "caBundle": "bm90IGEgY2VydA=="}, "spec.provider.vault.caBundle"),
        ({"server": "http://v", "auth": {}}, "spec.provider.vault.auth"),
        (
            {"server": "http://v", "auth": {"token": {"secretRef": TOKEN_REF}, "appRole": {}}},
            "spec.provider.vault.auth",
        ),
        ({"server": "http://v"}, "spec.provider.vault.auth"),
        ({"server": "http://v", "auth": {"appRole": {"roleId": "r"}}}, "appRole.secretRef"),
    ],
)
def test_invalid_configs_are_refused_naming_the_field(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidStoreConfig) as caught:
        PROVIDER.parse_config(raw)
    assert field in caught.value.message


def test_no_secret_value_appears_in_any_error_message(vault: VaultServer) -> None:
    """Values, tokens and secret ids that reached the provider never come back in errors."""
    secret_value = "pw-never-in-errors-7f3a"
    secret_id_text = "0f0f0f0f-dead-beef-0000-never-shown"
    wrong_token = "hvs.never-shown-token-4c1d"
    put(vault, "leak/check", {"password": secret_value})
    vault.request(
        "PUT",
        "sys/policies/acl/nothing",
        {"policy": 'path "secret/data/other/*" { capabilities = ["read"] }'},
    )
    role_id, good_secret_id = approle(vault, "leak", token_policies=["nothing"])

    async def scenario() -> list[BaseException]:
        errors: list[BaseException] = []

        async def collect(make: Callable[[], Awaitable[object]]) -> None:
            try:
                await make()
            except VaultsyncError as exc:
                errors.append(exc)

        await collect(lambda: connect(token_config(vault), token_credentials(wrong_token)))
        await collect(lambda: connect(approle_config(vault, role_id), secret_id_credentials(secret_id_text)))
        denied = await connect(approle_config(vault, role_id), secret_id_credentials(good_secret_id))
        root = await connect(token_config(vault), token_credentials(vault.root_token))
        try:
            await collect(lambda: denied.get_secret(RemoteRef("leak/check")))
            await collect(lambda: root.get_secret(RemoteRef("leak/check", version="7")))
            await collect(lambda: root.get_secret(RemoteRef("leak/check", version="x")))
            await collect(lambda: root.get_secret(RemoteRef("leak/missing")))
        finally:
            await denied.close()
            await root.close()
        return errors

    errors = run(scenario)
    assert len(errors) == 6
    for error in errors:
        text = f"{error} {error!r} {getattr(error, 'message', '')}"
        for value in (secret_value, secret_id_text, good_secret_id, wrong_token, vault.root_token):
            assert value not in text, f"{type(error).__name__} shows a secret: {text}"


def test_a_remote_value_never_prints_its_bytes(vault: VaultServer) -> None:
    put(vault, "repr/check", {"password": "pw-not-in-repr"})

    async def scenario() -> str:
        client = await connect(token_config(vault), token_credentials(vault.root_token))
        try:
            return repr(await client.get_secret(RemoteRef("repr/check")))
        finally:
            await client.close()

    assert "pw-not-in-repr" not in run(scenario)


# -- Kubernetes auth, against the real API server -----------------------------------------


@pytest.mark.e2e
def test_kubernetes_auth_logs_in_with_a_token_requested_for_the_store_s_service_account(
    vault: VaultServer,
    audit: Audit,
    cluster: Cluster,
    kube_api: KubeApi,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Vault checks each token with the API server's TokenReview, as it does in a cluster.

    The Vault role expects the audience `vault`, which is what vaultsync asks for by default;
    the ClusterSecretStore case logs in as the operator's own ServiceAccount ("app" stands in
    for it) with a token requested for that audience, not the operator's mounted API token.
    """
    for name in ("vault-reviewer", "app", "stranger"):
        kube_api.core.create_namespaced_service_account(
            namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
        )
    binding = f"{namespace}-vault-token-reviewer"
    kube_api.rbac.create_cluster_role_binding(
        client.V1ClusterRoleBinding(
            metadata=client.V1ObjectMeta(name=binding),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io",
                kind="ClusterRole",
                name="system:auth-delegator",
            ),
            subjects=[
                client.RbacV1Subject(kind="ServiceAccount", name="vault-reviewer", namespace=namespace)
            ],
        )
    )
    try:
        reviewer_jwt = kube_api.core.create_namespaced_service_account_token(
            "vault-reviewer",
            namespace,
            client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
            ),
        ).status.token
        api_server = configuration(cluster.kubeconfig)
        mount = f"kubernetes-{namespace}"
        vault.request("POST", f"sys/auth/{mount}", {"type": "kubernetes"})
        vault.request(
            "POST",
            f"auth/{mount}/config",
            {
                "kubernetes_host": api_server.host,
                "kubernetes_ca_cert": Path(api_server.ssl_ca_cert).read_text(),
                "token_reviewer_jwt": reviewer_jwt,
                "disable_local_ca_jwt": True,
            },
        )
        vault.request(
            "POST",
            f"auth/{mount}/role/shop",
            {
                "bound_service_account_names": ["app"],
                "bound_service_account_namespaces": [namespace],
                "audience": "vault",
                "token_policies": [READ_ALL],
                "token_ttl": "1h",
            },
        )
        put(vault, "k8s/db", {"password": "pw-kubernetes"})
        store = StoreContext(kind="SecretStore", name="vault", namespace=namespace)

        def config(service_account: str | None) -> dict[str, Any]:
            auth: dict[str, Any] = {"mountPath": mount, "role": "shop"}
            if service_account:
                auth["serviceAccountRef"] = {"name": service_account}  # the audience is vault's
            return {"server": vault.url, "auth": {"kubernetes": auth}}

        monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))

        async def scenario() -> tuple[bytes, int, bytes, AuthenticationError]:
            kube = Kube()
            try:
                credentials = StoreCredentials(kube, store)
                vault_client = await connect(config("app"), credentials, store)
                try:
                    value = (await vault_client.get_secret(RemoteRef("k8s/db"))).value
                    await vault_client.get_secret(RemoteRef("k8s/db"))
                    logins = vault_client.logins
                finally:
                    await vault_client.close()
                # The operator's own ServiceAccount ("app" here), through a TokenRequest.
                operator = StoreCredentials(kube, CLUSTER_STORE, operator_account=(namespace, "app"))
                as_operator = await connect(config(None), operator, CLUSTER_STORE)
                try:
                    operator_value = (await as_operator.get_secret(RemoteRef("k8s/db"))).value
                finally:
                    await as_operator.close()
                with pytest.raises(AuthenticationError) as caught:
                    await connect(config("stranger"), credentials, store)
                return value, logins, operator_value, caught.value
            finally:
                await kube.close()

        value, logins, operator_value, refused = run(scenario)
    finally:
        kube_api.rbac.delete_cluster_role_binding(binding)
    assert json.loads(value) == {"password": "pw-kubernetes"}
    assert operator_value == value
    assert logins == 1
    assert login_count(audit, mount) == 3  # the app, the operator's identity, the stranger
    assert "Kubernetes login" in refused.message and "'shop'" in refused.message
