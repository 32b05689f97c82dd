"""Listing for `dataFrom.find`, on every provider that lists, against its real server.

Each case writes keys of its own (a unique prefix or tag), so the servers are shared with the
other suites. The last cases go through the core (`finder.find_all` over the fetch cache)
with a real client, to prove that ExternalSecrets asking the same find at once share one
listing, and that a too broad find is refused naming the field.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from typing import cast

import pytest

from tests.providers.backends.base import ListingBackend
from tests.providers.backends.credentials import StaticCredentials
from tests.providers.backends.vault import MOUNT, VaultBackend
from tests.providers.conftest import Backends
from tests.providers.test_contract import STORE, connected
from vaultsync.cache import FetchCache
from vaultsync.errors import InvalidSpec, PermissionDenied, SecretNotFound
from vaultsync.finder import find_all
from vaultsync.models import ExternalSecretSpec
from vaultsync.providers import PROVIDERS
from vaultsync.providers.base import FindQuery, ListingUnsupported, SecretsClient

VALUE = json.dumps({"username": "app"})


def token() -> str:
    return f"find-{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize("name", ["aws", "vault"])  # Azure: test_azure_refuses_a_path_naming_why
async def test_lists_every_key_under_a_path_and_nothing_beside_it(backends: Backends, name: str) -> None:
    listing_backend = cast(ListingBackend, backends.get(name))
    root = token()
    keys = [f"{root}/a", f"{root}/b", f"{root}/sub/c"]
    for key in [*keys, f"{root}-sibling/x", f"other-{root}/y"]:
        listing_backend.write(key, VALUE)
    async with connected(listing_backend) as client:
        listed = await client.list_keys(FindQuery(path=root + "/"), limit=100)
    assert sorted(listed) == keys


async def test_lists_only_the_secrets_carrying_every_tag(listing_backend: ListingBackend) -> None:
    team = token()
    wanted = f"{team}-wanted"
    listing_backend.write_tagged(wanted, VALUE, {"team": team, "env": "prod"})
    listing_backend.write_tagged(f"{team}-other-env", VALUE, {"team": team, "env": "dev"})
    listing_backend.write_tagged(f"{team}-swapped", VALUE, {"team": "prod", "env": team})
    listing_backend.write(f"{team}-untagged", VALUE)
    async with connected(listing_backend) as client:
        listed = await client.list_keys(FindQuery(tags=(("env", "prod"), ("team", team))), limit=100)
    assert listed == [wanted]


async def test_a_listing_stops_one_past_its_limit(listing_backend: ListingBackend) -> None:
    team, paths = token(), listing_backend.name != "azurekv"  # Key Vault names have no folders
    for i in range(4):
        listing_backend.write_tagged(f"{team}/{i}" if paths else f"{team}-{i}", VALUE, {"team": team})
    query = FindQuery(path=f"{team}/") if paths else FindQuery(tags=(("team", team),))
    async with connected(listing_backend) as client:
        listed = await client.list_keys(query, limit=2)
    assert len(listed) == 3


async def test_vault_refuses_tags_over_more_secrets_than_it_may_read_the_metadata_of(
    backends: Backends,
) -> None:
    vault = cast(ListingBackend, backends.get("vault"))
    root = token()
    for i in range(3):
        vault.write(f"{root}/{i}", VALUE)
    async with connected(vault) as client:
        with pytest.raises(InvalidSpec, match=f"more than 2 secrets under path '{root}' of mount"):
            await client.list_keys(FindQuery(path=root, tags=(("team", "x"),)), limit=2)


async def test_azure_refuses_a_path_naming_why(backends: Backends) -> None:
    async with connected(backends.get("azure")) as client:
        with pytest.raises(ListingUnsupported, match="Azure Key Vault secret names have no paths"):
            await client.list_keys(FindQuery(path="app/"), limit=10)


class CountingClient(SecretsClient):
    """A real client whose listings are counted (what the provider call metric counts)."""

    def __init__(self, client: SecretsClient) -> None:
        self.client = client
        self.listings = 0

    async def list_keys(self, query: FindQuery, limit: int) -> list[str]:
        self.listings += 1
        await asyncio.sleep(0.05)  # the listing is in flight while the others ask
        return await self.client.list_keys(query, limit)

    async def get_secret(self, ref):  # type: ignore[no-untyped-def]
        return await self.client.get_secret(ref)

    async def get_secrets(self, refs: Sequence):  # type: ignore[no-untyped-def, type-arg]
        return await self.client.get_secrets(refs)

    async def validate(self) -> None:
        await self.client.validate()


def find_spec(**find: object) -> ExternalSecretSpec:
    return ExternalSecretSpec.model_validate({"storeRef": {"name": "s"}, "dataFrom": [{"find": find}]})


async def test_fifty_external_secrets_with_the_same_find_share_one_listing_per_interval(
    listing_backend: ListingBackend,
) -> None:
    team = token()
    for i in range(3):
        listing_backend.write_tagged(f"{team}-{i}", VALUE, {"team": team})
    spec = find_spec(tags={"team": team}, name={"regexp": "-[02]$"})
    cache = FetchCache()
    async with connected(listing_backend) as real:
        client = CountingClient(real)
        found = await asyncio.gather(
            *(find_all(cache, "store", listing_backend.name, client, spec, 3600.0) for _ in range(50))
        )
        assert client.listings == 1
        assert all(f == {0: (f"{team}-0", f"{team}-2")} for f in found)
        await find_all(cache, "store", listing_backend.name, client, spec, 3600.0)
        assert client.listings == 1  # within the interval: served from the cache
        await find_all(cache, "store", listing_backend.name, client, spec, 0.0)
        assert client.listings == 2  # a sync that accepts nothing old lists again


async def test_a_find_matching_nothing_is_key_not_found_naming_the_field(
    listing_backend: ListingBackend,
) -> None:
    spec = find_spec(tags={"team": token()})
    async with connected(listing_backend) as client:
        with pytest.raises(SecretNotFound) as caught:
            await find_all(FetchCache(), "store", listing_backend.name, client, spec, 0.0)
    assert caught.value.message.startswith("spec.dataFrom[0].find: no remote key with tags team=find-")


async def test_a_find_matching_more_than_one_external_secret_may_use_is_refused_naming_the_field(
    listing_backend: ListingBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("vaultsync.finder.FIND_MAX_KEYS", 2)
    team = token()
    for i in range(3):
        listing_backend.write_tagged(f"{team}-{i}", VALUE, {"team": team})
    async with connected(listing_backend) as client:
        with pytest.raises(InvalidSpec) as caught:
            await find_all(
                FetchCache(), "store", listing_backend.name, client, find_spec(tags={"team": team}), 0.0
            )
    assert caught.value.message == (
        "spec.dataFrom[0].find: matches 3 remote keys, over the 2 one ExternalSecret may use; "
        "narrow name.regexp, tags or path"
    )


async def test_vault_says_which_capability_a_policy_without_list_lacks(backends: Backends) -> None:
    vault = cast(VaultBackend, backends.get("vault"))
    policy, token_id = token(), f"no-list-{token()}"
    vault.server.request(
        "PUT",
        f"sys/policies/acl/{policy}",
        {"policy": f'path "{MOUNT}/data/*" {{ capabilities = ["read"] }}'},
    )
    vault.server.request(
        "POST", "auth/token/create-orphan", {"id": token_id, "policies": [policy], "ttl": "1h"}
    )
    credentials = StaticCredentials(secrets={("no-list", "token"): token_id.encode()})
    config = {
        **vault.provider_config(),
        "auth": {"token": {"secretRef": {"name": "no-list", "key": "token"}}},
    }
    provider = PROVIDERS["vault"]
    client = await provider.new_client(provider.parse_config(config), STORE, credentials)
    try:
        with pytest.raises(PermissionDenied) as caught:
            await client.list_keys(FindQuery(path="app"), limit=10)
    finally:
        await client.close()
    assert "find needs the list capability on secret/metadata/<path>/*" in caught.value.message
