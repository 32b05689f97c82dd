"""Change detection against each real server: values are read again only when they changed.

Each case runs the shared cache (`FetchCache`) over a real client of the backend, with
a clock the test moves past the refresh interval instead of sleeping; the client is
wrapped only to count what the cache asks of it (reads and stamp probes), every answer
comes from the server. The four facts the issue asks for: a new version is seen; an
unchanged value is not read again; a key deleted and created again under its name is
seen; a version rolled back to an earlier one is seen.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from tests.providers.backends.aws import AwsBackend
from tests.providers.backends.azure import AzureBackend
from tests.providers.backends.base import DetectingBackend, unique_key
from tests.providers.test_contract import connected, document
from vaultsync.cache import FetchCache
from vaultsync.errors import VaultsyncError
from vaultsync.providers.base import RemoteRef, RemoteValue, SecretsClient

INTERVAL = 60.0


class Counted(SecretsClient):
    """The real client, with the calls the cache makes counted."""

    def __init__(self, inner: SecretsClient) -> None:
        self.inner = inner
        self.reads: list[RemoteRef] = []
        self.probes = 0

    async def get_secret(self, ref: RemoteRef) -> RemoteValue:
        self.reads.append(ref)
        return await self.inner.get_secret(ref)

    async def get_secrets(
        self, refs: Sequence[RemoteRef]
    ) -> Mapping[RemoteRef, RemoteValue | VaultsyncError]:
        self.reads.extend(refs)
        return await self.inner.get_secrets(refs)

    async def stamps(
        self, due: Sequence[RemoteRef], known: Sequence[RemoteRef]
    ) -> Mapping[RemoteRef, str | None] | None:
        self.probes += 1
        return await self.inner.stamps(due, known)

    async def validate(self) -> None:
        await self.inner.validate()


class Refresher:
    """What the scheduler does for one ExternalSecret: a refresh per interval."""

    def __init__(self, client: Counted) -> None:
        self.now = 1000.0
        self.client = client
        self.cache = FetchCache(clock=lambda: self.now)

    async def refresh(self, ref: RemoteRef) -> bytes:
        self.now += INTERVAL + 1
        got = (await self.cache.get("store", "p", self.client, [ref], max_age=INTERVAL))[ref]
        assert isinstance(got, RemoteValue), got
        return got.value


def parsed(raw: bytes) -> object:
    return json.loads(raw)


async def test_a_new_version_is_seen(detecting_backend: DetectingBackend) -> None:
    key, new = unique_key("detect"), document()
    detecting_backend.write(key, document())
    detecting_backend.settle()
    async with connected(detecting_backend) as client:
        refresher = Refresher(Counted(client))
        await refresher.refresh(RemoteRef(key))
        detecting_backend.write(key, new)
        assert parsed(await refresher.refresh(RemoteRef(key))) == json.loads(new)
    assert len(refresher.client.reads) == 2 and refresher.client.probes == 1


async def test_an_unchanged_value_is_not_read_again(detecting_backend: DetectingBackend) -> None:
    key, value = unique_key("detect"), document()
    detecting_backend.write(key, value)
    detecting_backend.settle()
    async with connected(detecting_backend) as client:
        refresher = Refresher(Counted(client))
        for _ in range(3):
            assert parsed(await refresher.refresh(RemoteRef(key))) == json.loads(value)
    assert refresher.client.reads == [RemoteRef(key)]
    assert refresher.client.probes == 2


async def test_a_key_deleted_and_created_again_is_seen(detecting_backend: DetectingBackend) -> None:
    key, again = unique_key("detect"), document()
    detecting_backend.write(key, document())
    detecting_backend.settle()
    async with connected(detecting_backend) as client:
        refresher = Refresher(Counted(client))
        await refresher.refresh(RemoteRef(key))
        detecting_backend.delete(key)
        detecting_backend.write(key, again)  # Vault: version 1 again, as before
        assert parsed(await refresher.refresh(RemoteRef(key))) == json.loads(again)
    assert len(refresher.client.reads) == 2


async def test_a_version_rolled_back_is_seen(detecting_backend: DetectingBackend) -> None:
    key, first = unique_key("detect"), document()
    old = detecting_backend.write(key, first)
    detecting_backend.settle()  # Azure: versions of one second are told apart by no listing
    detecting_backend.write(key, document())
    detecting_backend.settle()
    async with connected(detecting_backend) as client:
        refresher = Refresher(Counted(client))
        await refresher.refresh(RemoteRef(key))
        detecting_backend.roll_back(key, old)
        assert parsed(await refresher.refresh(RemoteRef(key))) == json.loads(first)
    assert len(refresher.client.reads) == 2


async def test_one_aws_listing_confirms_every_key_held_and_reads_the_changed_ones(aws: AwsBackend) -> None:
    keys = [unique_key("detect") for _ in range(25)]
    for key in keys:
        aws.write(key, document())
    refs = [RemoteRef(k) for k in keys]
    async with connected(aws) as client:
        refresher = Refresher(Counted(client))
        await refresher.cache.get("store", "p", refresher.client, refs, max_age=INTERVAL)
        changed = document()
        aws.write(keys[7], changed)
        refresher.now += INTERVAL + 1
        await refresher.cache.get("store", "p", refresher.client, refs[:1], max_age=INTERVAL)
        # keys[7] is being read already (nobody asked): this waits for that read
        got = await refresher.cache.get("store", "p", refresher.client, refs, max_age=INTERVAL)
    assert refresher.client.probes == 1  # the other 24 keys were answered by the same listing
    assert len(refresher.client.reads) == len(keys) + 1
    assert refresher.client.reads.count(refs[7]) == 2
    value = got[refs[7]]
    assert isinstance(value, RemoteValue) and parsed(value.value) == json.loads(changed)


async def test_one_azure_listing_of_pages_confirms_every_key_held_without_a_read(azure: AzureBackend) -> None:
    keys = [unique_key("detect") for _ in range(30)]  # more than one page of 25
    for key in keys:
        azure.write(key, document())
    azure.settle()
    refs = [RemoteRef(k) for k in keys]
    async with connected(azure) as client:
        refresher = Refresher(Counted(client))
        await refresher.cache.get("store", "p", refresher.client, refs, max_age=INTERVAL)
        azure.emulator.reset_counts()
        refresher.now += INTERVAL + 1
        await refresher.cache.get("store", "p", refresher.client, refs, max_age=INTERVAL)
    calls = _vault_calls(azure)
    assert refresher.client.probes == 1 and sorted(r.key for r in refresher.client.reads) == sorted(keys)
    assert calls.get("get", 0) == 0, calls  # every value confirmed by the listing
    assert 2 <= calls["list"] <= len(keys), calls  # its pages: never more than reading would cost


async def test_an_azure_vault_listing_more_pages_than_keys_held_is_read_instead(azure: AzureBackend) -> None:
    for _ in range(26):  # the vault holds more than one page of secrets
        azure.write(unique_key("detect"), document())
    key = unique_key("detect")
    azure.write(key, document())
    azure.settle()
    async with connected(azure) as client:
        refresher = Refresher(Counted(client))
        azure.emulator.reset_counts()
        for _ in range(3):
            await refresher.refresh(RemoteRef(key))
    calls = _vault_calls(azure)
    # One key held: the first listing stops after one page (a read costs one call) and is
    # not tried again for that key alone.
    assert calls == {"get": 3, "list": 1}, calls


async def test_an_azure_app_without_list_permission_reads_and_stops_asking(azure: AzureBackend) -> None:
    key, value = unique_key("detect"), document()
    azure.write(key, value)
    azure.settle()
    async with connected(azure, azure.get_only_config()) as client:
        refresher = Refresher(Counted(client))
        azure.emulator.reset_counts()
        for _ in range(3):
            assert parsed(await refresher.refresh(RemoteRef(key))) == json.loads(value)
    assert _vault_calls(azure) == {"get": 3, "list": 1}


async def test_an_azure_value_read_within_the_second_it_was_written_is_read_again(
    azure: AzureBackend,
) -> None:
    """Key Vault's times are whole seconds: a value read in its own second gets no stamp,
    because a write later in that second would list the same time."""
    key = unique_key("detect")
    for _ in range(20):  # until one write and its read fall within one second
        azure.write(key, document())
        async with connected(azure) as client:
            got = await client.get_secret(RemoteRef(key))
        listed = await _listed_stamp(azure, key)
        if got.stamp == "":
            assert listed is not None  # the listing has a time: it is the read that refuses it
            return
        assert got.stamp == listed
    raise AssertionError("no write and read fell within one second in 20 tries")


def _vault_calls(azure: AzureBackend) -> dict[str, int]:
    """Key Vault requests by operation since the emulator's counts were reset, less the
    unauthenticated ones a new client makes to learn the authentication challenge."""
    return {k: v for k, v in azure.emulator.counts()["calls"].items() if k != "challenge"}


async def _listed_stamp(azure: AzureBackend, key: str) -> str | None:
    """What a listing says of `key`, asked as a store holding 100 keys (worth a listing)."""
    held = [RemoteRef(unique_key("held")) for _ in range(100)]
    async with connected(azure) as client:
        stamps = await client.stamps([RemoteRef(key)], held)
    assert stamps is not None
    return stamps[RemoteRef(key)]
