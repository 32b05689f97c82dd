"""`--verbose` against real servers (moto, OpenBao): the captured output holds no credential and no value.

The operator's own logging set-up (`cli.configure_logging`) is used, at DEBUG, while
providers log in and read: static AWS keys, a web identity exchanged for session
credentials, a Vault AppRole login and a Vault token. Everything written to stderr is
then searched for each credential, and for the values read.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterator

import pytest

from tests.providers.backends.aws import SERVICE_ACCOUNT_TOKEN, AwsBackend
from tests.providers.backends.base import unique_key
from tests.providers.backends.credentials import StaticCredentials
from tests.providers.servers.vault import ROOT_TOKEN, VaultServer, start_dev_server
from tests.providers.test_contract import secret
from vaultsync.cli import configure_logging
from vaultsync.logsafety import SDK_LOGGERS
from vaultsync.providers import PROVIDERS
from vaultsync.providers.base import RemoteRef, StoreContext
from vaultsync.providers.vault import VaultClient

STORE = StoreContext(kind="SecretStore", name="store", namespace="team-a")
READER_POLICY = "verbose-reader"
READER_TOKEN = "verbose-reader-token-Quokka-7"
# moto's temporary credentials: an ASIA key id and a session token with this fixed prefix.
SESSION_KEY_ID = re.compile(r"ASIA[A-Z0-9]{16}")
SESSION_TOKEN_PREFIX = "FQoGZXIvYXdz"

Output = Callable[[], str]


@pytest.fixture
def verbose(capfd: pytest.CaptureFixture[str]) -> Iterator[Output]:
    """Logging exactly as `vaultsync run --verbose` sets it up; undone afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in (*SDK_LOGGERS, "asyncio", "kopf.objects")}
    capfd.readouterr()
    configure_logging(verbose=True)
    assert root.level == logging.DEBUG
    written: list[str] = []

    def output() -> str:
        written.append(capfd.readouterr().err)
        return "".join(written)

    try:
        yield output
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, old in levels.items():
            logging.getLogger(name).setLevel(old)
        logging.getLogger("asyncio").propagate = True


def assert_clean(output: str, *secrets: str) -> None:
    assert output, "nothing was logged: the test would prove nothing"
    for value in secrets:
        assert value not in output, f"a credential or value reached the log: {value[:4]}..."
    assert not SESSION_KEY_ID.search(output), "a temporary AWS key id reached the log"
    assert SESSION_TOKEN_PREFIX not in output, "an AWS session token reached the log"


def test_aws_static_keys_and_web_identity_leave_no_credential_in_verbose_output(
    aws: AwsBackend, verbose: Output
) -> None:
    key, value = unique_key("verbose"), secret()
    aws.write(key, value)
    provider = PROVIDERS["aws"]

    async def read(config: object, unauthenticated_connect: bool = False) -> bytes:
        parsed = provider.parse_config(config)  # type: ignore[arg-type]
        if unauthenticated_connect:
            with aws.authentication_off():  # moto cannot check the unsigned STS call
                client = await provider.new_client(parsed, STORE, aws.credentials())
        else:
            client = await provider.new_client(parsed, STORE, aws.credentials())
        try:
            logging.getLogger("vaultsync.test").debug("reading through %s", type(client).__name__)
            results = await client.get_secrets([RemoteRef(key), RemoteRef(unique_key("missing"))])
            found = results[RemoteRef(key)]
            assert not isinstance(found, Exception)
            return found.value
        finally:
            await client.close()

    assert asyncio.run(read(aws.provider_config())) == value.encode()
    assert asyncio.run(read(aws.web_identity_config(), unauthenticated_connect=True)) == value.encode()
    key_id, secret_key = aws.access_key
    assert_clean(verbose(), key_id, secret_key, SERVICE_ACCOUNT_TOKEN, value)


@pytest.fixture(scope="module")
def vault() -> Iterator[VaultServer]:
    server = start_dev_server()
    try:
        policy = 'path "secret/data/*" { capabilities = ["read"] }'
        server.request("PUT", f"sys/policies/acl/{READER_POLICY}", {"policy": policy})
        server.request("POST", "auth/token/create", {"id": READER_TOKEN, "policies": [READER_POLICY]})
        server.request("POST", "sys/auth/approle", {"type": "approle"})
        yield server
    finally:
        server.close()


def test_vault_approle_and_token_logins_leave_no_credential_in_verbose_output(
    vault: VaultServer, verbose: Output
) -> None:
    key, value = unique_key("verbose"), secret()
    vault.request("POST", f"secret/data/{key}", {"data": {"password": value}})
    vault.request("POST", "auth/approle/role/verbose", {"token_policies": [READER_POLICY]})
    role_id = vault.request("GET", "auth/approle/role/verbose/role-id")["data"]["role_id"]
    secret_id = vault.request("POST", "auth/approle/role/verbose/secret-id")["data"]["secret_id"]
    credentials = StaticCredentials(
        secrets={("approle", "secret-id"): secret_id.encode(), ("token", "token"): READER_TOKEN.encode()}
    )
    provider = PROVIDERS["vault"]
    issued: list[str] = []

    async def read(auth: dict[str, object]) -> bytes:
        config = provider.parse_config({"server": vault.url, "auth": auth})
        client = await provider.new_client(config, STORE, credentials)
        assert isinstance(client, VaultClient)
        try:
            logging.getLogger("vaultsync.test").debug("reading through %s", type(client).__name__)
            found = await client.get_secret(RemoteRef(key))
            if client._lease is not None:
                issued.append(client._lease.token)
            return found.value
        finally:
            await client.close()

    approle = {"appRole": {"roleId": role_id, "secretRef": {"name": "approle", "key": "secret-id"}}}
    assert value.encode() in asyncio.run(read(approle))
    assert value.encode() in asyncio.run(read({"token": {"secretRef": {"name": "token", "key": "token"}}}))
    assert issued and issued[0] != READER_TOKEN
    assert_clean(verbose(), secret_id, READER_TOKEN, ROOT_TOKEN, value, *issued)
