"""A remote value too large for a Secret is refused with `SecretTooLarge` naming the key, and never cached.

Against real servers: OpenBao holds values of any size (its request limit is 32 MiB), so a
tenant who can write a key can make it huge. The Vault provider stops reading a response
past its limit (4 MiB, a 1 MiB value JSON-escaped) instead of holding it whole; a value
under that but over a Secret's 1 MiB is refused by the shared cache as soon as it is read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.providers.backends.base import unique_key
from tests.providers.backends.credentials import StaticCredentials
from tests.providers.servers.vault import VaultServer, start_dev_server
from vaultsync.cache import FetchCache
from vaultsync.constants import SECRET_SIZE_LIMIT
from vaultsync.errors import SecretTooLarge
from vaultsync.providers import PROVIDERS
from vaultsync.providers.base import RemoteRef, RemoteValue, StoreContext
from vaultsync.providers.vault import RESPONSE_LIMIT

STORE = StoreContext(kind="SecretStore", name="store", namespace="team-a")
MARKER = "Zebra-Quokka-value-"


@pytest.fixture(scope="module")
def vault() -> Iterator[VaultServer]:
    server = start_dev_server()
    try:
        yield server
    finally:
        server.close()


def read_through_cache(vault: VaultServer, key: str) -> tuple[RemoteValue | Exception, int]:
    """What the shared cache gives for `key` read from `vault`, and the bytes it then holds."""
    provider = PROVIDERS["vault"]
    config = provider.parse_config(
        {"server": vault.url, "auth": {"token": {"secretRef": {"name": "t", "key": "t"}}}}
    )
    credentials = StaticCredentials(secrets={("t", "t"): vault.root_token.encode()})

    async def scenario() -> tuple[RemoteValue | Exception, int]:
        client = await provider.new_client(config, STORE, credentials)
        cache = FetchCache()
        try:
            results = await cache.get("vault", "vault", client, [RemoteRef(key)], 60.0)
        finally:
            await client.close()
        return results[RemoteRef(key)], cache.size

    return asyncio.run(scenario())


def put(vault: VaultServer, key: str, size: int) -> None:
    vault.request("POST", f"secret/data/{key}", {"data": {"blob": MARKER + "x" * size}})


def test_a_value_just_over_a_secret_is_refused_by_name_and_not_cached(vault: VaultServer) -> None:
    key = unique_key("big")
    put(vault, key, SECRET_SIZE_LIMIT + 1024)
    result, held = read_through_cache(vault, key)
    assert isinstance(result, SecretTooLarge)
    assert repr(key) in result.message
    assert MARKER not in result.message
    assert held == 0


def test_a_response_past_the_read_limit_is_not_read_to_its_end(vault: VaultServer) -> None:
    key = unique_key("huge")
    put(vault, key, RESPONSE_LIMIT * 4)  # 16 MiB, under OpenBao's own 32 MiB request limit
    result, held = read_through_cache(vault, key)
    assert isinstance(result, SecretTooLarge)
    assert repr(key) in result.message
    assert "not read further" in result.message  # stopped by the provider, not after the read
    assert MARKER not in result.message
    assert held == 0


def test_a_value_that_fits_a_secret_is_read(vault: VaultServer) -> None:
    key = unique_key("fits")
    put(vault, key, 100 * 1024)
    result, held = read_through_cache(vault, key)
    assert isinstance(result, RemoteValue)
    assert held > 100 * 1024
