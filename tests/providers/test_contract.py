"""The behaviour every provider owes the core, checked against every backend's real server.

One case, one sentence; each runs once per backend in `tests/providers/backends/`
(the fake included), so a new provider is held to the same contract by adding a
backend module. Cases talk to the `SecretsClient` directly: no cluster needed.
Values are JSON objects (what every vault can hold) compared parsed; each holds a
unique, distinctive secret, and error messages are checked not to contain it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import pytest

from tests.providers.backends.base import Backend, LiveBackend, unique_key
from tests.providers.backends.credentials import StaticCredentials
from vaultsync.errors import (
    AuthenticationError,
    PropertyNotFound,
    ProviderError,
    SecretNotFound,
    VaultsyncError,
)
from vaultsync.properties import extract_all, select_property
from vaultsync.providers import PROVIDERS
from vaultsync.providers.base import RemoteRef, RemoteValue, SecretsClient, StoreContext

STORE = StoreContext(kind="SecretStore", name="contract-store", namespace="contract")
MANY = 45  # more than two AWS batches of 20


@asynccontextmanager
async def connected(
    backend: Backend, config: Mapping[str, Any] | None = None
) -> AsyncIterator[SecretsClient]:
    provider = PROVIDERS[backend.name]
    parsed = provider.parse_config(config if config is not None else backend.provider_config())
    client = await provider.new_client(parsed, STORE, backend.credentials())
    try:
        yield client
    finally:
        await client.close()


def secret() -> str:
    """A value distinctive enough that finding it in a message is proof of a leak."""
    return f"s3cr3t-{uuid.uuid4().hex}"


def document(password: str | None = None) -> str:
    return json.dumps({"username": "app", "password": password or secret()})


def assert_read(got: RemoteValue | VaultsyncError, written: str, version: str) -> None:
    assert isinstance(got, RemoteValue), got
    assert json.loads(got.value) == json.loads(written)
    assert got.version == version


async def one_of_many(client: SecretsClient, ref: RemoteRef) -> RemoteValue:
    """A batch read of one key, its per-key error raised."""
    result = (await client.get_secrets([ref]))[ref]
    if isinstance(result, VaultsyncError):
        raise result
    return result


def assert_no_leak(error: BaseException, *values: str | bytes) -> None:
    text = f"{error} {error!r} {getattr(error, 'message', '')}"
    for value in values:
        shown = value.decode(errors="replace") if isinstance(value, bytes) else value
        assert shown not in text, "a secret value leaked into an error message"


async def test_reads_the_whole_value_and_its_version(backend: Backend) -> None:
    key, value = unique_key(), document()
    version = backend.write(key, value)
    async with connected(backend) as client:
        assert_read(await client.get_secret(RemoteRef(key)), value, version)


async def test_json_property_and_extract_work_on_the_value_through_the_core(backend: Backend) -> None:
    key, password = unique_key(), secret()
    backend.write(key, json.dumps({"db": {"password": password}, "tls.crt": "pem"}))
    async with connected(backend) as client:
        value = (await client.get_secret(RemoteRef(key))).value
    assert select_property(value, "db.password", key=key, field="f") == password.encode()
    assert select_property(value, "tls.crt", key=key, field="f") == b"pem"
    with pytest.raises(PropertyNotFound) as info:
        select_property(value, "db.user", key=key, field="f")
    assert_no_leak(info.value, password)
    assert extract_all(value, key=key, field="f") == {
        "db": json.dumps({"password": password}, separators=(",", ":")).encode(),
        "tls.crt": b"pem",
    }


async def test_missing_key_is_secret_not_found_naming_the_key(backend: Backend) -> None:
    key = unique_key("missing")
    async with connected(backend) as client:
        with pytest.raises(SecretNotFound) as info:
            await client.get_secret(RemoteRef(key))
    assert key in info.value.message


async def test_version_pin_reads_the_old_version_after_a_new_one_is_written(
    backend: Backend,
) -> None:
    key, old, new = unique_key(), document(), document()
    old_version = backend.write(key, old)
    new_version = backend.write(key, new)
    async with connected(backend) as client:
        assert_read(await client.get_secret(RemoteRef(key, old_version)), old, old_version)
        assert_read(await client.get_secret(RemoteRef(key)), new, new_version)


async def test_new_version_is_returned_by_the_next_read(backend: Backend) -> None:
    key = unique_key()
    backend.write(key, document())
    new = document()
    second = backend.write(key, new)
    async with connected(backend) as client:
        assert_read(await client.get_secret(RemoteRef(key)), new, second)


async def test_a_client_already_open_sees_a_new_version(live_backend: LiveBackend) -> None:
    key = unique_key()
    live_backend.write(key, document())
    async with connected(live_backend) as client:
        await client.get_secret(RemoteRef(key))
        new = document()
        version = live_backend.write(key, new)
        assert_read(await client.get_secret(RemoteRef(key)), new, version)


async def test_reads_many_keys_at_once_with_a_result_or_an_error_per_key(
    backend: Backend,
) -> None:
    values = {unique_key("many"): document() for _ in range(MANY)}
    versions = {key: backend.write(key, value) for key, value in values.items()}
    pinned_key = next(iter(values))
    pinned = RemoteRef(pinned_key, versions[pinned_key])
    backend.write(pinned_key, document())  # the pin must still read the old version
    missing = RemoteRef(unique_key("missing"))
    refs = [RemoteRef(key) for key in values] + [pinned, missing]

    async with connected(backend) as client:
        results = await client.get_secrets(refs)

    assert set(results) == set(refs)
    assert_read(results[pinned], values[pinned_key], pinned.version)
    assert isinstance(results[missing], SecretNotFound)
    for key, value in list(values.items())[1:]:
        assert_read(results[RemoteRef(key)], value, versions[key])


async def test_valid_credentials_pass_validate(backend: Backend) -> None:
    async with connected(backend) as client:
        await client.validate()


async def test_wrong_credentials_fail_with_a_message_naming_the_store_and_what_to_check(
    live_backend: LiveBackend,
) -> None:
    with pytest.raises(AuthenticationError) as info:
        async with connected(live_backend, live_backend.bad_credentials_config()) as client:
            await client.validate()
    message = info.value.message
    assert str(STORE) in message
    assert "check" in message.lower()
    credentials = live_backend.credentials()
    if isinstance(credentials, StaticCredentials):
        assert_no_leak(info.value, *credentials.secrets.values(), *credentials.tokens.values())


async def test_stopped_server_is_a_provider_error_and_a_restart_recovers(
    live_backend: LiveBackend,
) -> None:
    key, password = unique_key(), secret()
    version = live_backend.write(key, document(password))
    async with connected(live_backend) as client:
        assert_read(await client.get_secret(RemoteRef(key)), document(password), version)
        live_backend.stop()
        try:
            failures: list[VaultsyncError] = []
            for attempt in (
                lambda: client.get_secret(RemoteRef(key)),
                lambda: one_of_many(client, RemoteRef(key)),
                client.validate,
            ):
                with pytest.raises(ProviderError) as info:
                    await attempt()
                failures.append(info.value)
        finally:
            live_backend.start()
        for failure in failures:
            assert not isinstance(failure, SecretNotFound | AuthenticationError), failure.message
            assert_no_leak(failure, password)

        again = document()
        version = live_backend.write(key, again)  # dev servers may forget data on restart
        assert_read(await client.get_secret(RemoteRef(key)), again, version)
