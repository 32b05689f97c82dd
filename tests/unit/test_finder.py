"""dataFrom.find without a server: the shared listing in the cache, the selection and its limits,
and the refusals of the spec, each naming its field."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from tests.unit.test_cache import Clock

from vaultsync.cache import FetchCache
from vaultsync.errors import InvalidSpec, ProviderError, SecretNotFound
from vaultsync.finder import find_all
from vaultsync.models import ExternalSecretSpec, parse_external_secret
from vaultsync.providers.base import FindQuery, ListingUnsupported, RemoteRef, RemoteValue, SecretsClient


class Lister(SecretsClient):
    def __init__(self, names: Sequence[str], fail: Exception | None = None) -> None:
        self.names = list(names)
        self.fail = fail
        self.queries: list[FindQuery] = []

    async def list_keys(self, query: FindQuery, limit: int) -> list[str]:
        self.queries.append(query)
        await asyncio.sleep(0.01)
        if self.fail is not None:
            raise self.fail
        return [n for n in self.names if n.startswith(query.path)][: limit + 1]

    async def get_secret(self, ref: RemoteRef) -> RemoteValue:
        return RemoteValue(b"v")

    async def validate(self) -> None:
        return None


def spec(*finds: dict[str, Any]) -> ExternalSecretSpec:
    return ExternalSecretSpec.model_validate(
        {"storeRef": {"name": "s"}, "dataFrom": [{"find": f} for f in finds]}
    )


def find(cache: FetchCache, client: SecretsClient, es: ExternalSecretSpec, max_age: float = 60.0) -> Any:
    return find_all(cache, "store", "fake", client, es, max_age)


def test_a_listing_is_shared_while_in_flight_and_reused_while_young_enough() -> None:
    clock, client = Clock(), Lister(["app/a", "app/b", "db/c"])
    cache = FetchCache(clock=clock)
    es = spec({"path": "app/"})

    async def scenario() -> None:
        results = await asyncio.gather(*(find(cache, client, es) for _ in range(20)))
        assert results == [{0: ("app/a", "app/b")}] * 20
        assert len(client.queries) == 1
        clock.now += 59
        await find(cache, client, es)
        assert len(client.queries) == 1
        clock.now += 2  # older than the asker accepts: listed again
        await find(cache, client, es)
        assert len(client.queries) == 2

    asyncio.run(scenario())


def test_finds_that_differ_in_their_regexp_are_selected_apart() -> None:
    client = Lister(["app/a", "app/b"])
    cache = FetchCache()

    async def scenario() -> None:
        first = await find(cache, client, spec({"path": "app/", "name": {"regexp": "a$"}}))
        second = await find(cache, client, spec({"path": "app/", "name": {"regexp": "b$"}}))
        assert (first, second) == ({0: ("app/a",)}, {0: ("app/b",)})

    asyncio.run(scenario())


def test_a_listing_error_is_shared_named_by_field_and_never_kept() -> None:
    client = Lister([], fail=ProviderError("vault down"))
    cache = FetchCache()

    async def scenario() -> None:
        for _ in range(2):
            with pytest.raises(ProviderError) as caught:
                await find(cache, client, spec({"path": "app/"}))
            assert caught.value.message == "spec.dataFrom[0].find: vault down"
        assert len(client.queries) == 2

    asyncio.run(scenario())


def test_a_provider_that_cannot_list_says_so_naming_the_field() -> None:
    class Unlisting(Lister):
        list_keys = SecretsClient.list_keys  # type: ignore[assignment]

    async def scenario() -> None:
        with pytest.raises(ListingUnsupported) as caught:
            await find(FetchCache(), Unlisting([]), spec({"path": "app/"}))
        assert caught.value.message.startswith("spec.dataFrom[0].find: this store's provider cannot list")

    asyncio.run(scenario())


def test_a_find_matching_nothing_is_key_not_found() -> None:
    async def scenario() -> None:
        with pytest.raises(SecretNotFound) as caught:
            await find(FetchCache(), Lister(["app/a"]), spec({"path": "app/", "name": {"regexp": "^z"}}))
        assert caught.value.message == (
            "spec.dataFrom[0].find: no remote key under path 'app/' matching name.regexp '^z'; "
            "the Secret is left as it is"
        )

    asyncio.run(scenario())


def test_the_keys_of_all_find_entries_count_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("vaultsync.finder.FIND_MAX_KEYS", 3)
    client = Lister(["a/1", "a/2", "b/1", "b/2"])

    async def scenario() -> None:
        with pytest.raises(InvalidSpec) as caught:
            await find(FetchCache(), client, spec({"path": "a/"}, {"path": "b/"}))
        assert caught.value.message.startswith("spec.dataFrom[1].find: the find entries match 4 remote keys")

    asyncio.run(scenario())


def test_a_listing_past_its_limit_is_refused_as_too_broad(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("vaultsync.finder.FIND_MAX_LISTED", 2)

    async def scenario() -> None:
        with pytest.raises(InvalidSpec) as caught:
            await find(FetchCache(), Lister(["a/1", "a/2", "a/3"]), spec({"path": "a/"}))
        assert caught.value.message == (
            "spec.dataFrom[0].find: the store lists more than 2 secrets for this path and these "
            "tags; narrow them"
        )

    asyncio.run(scenario())


def test_a_regexp_that_spends_its_budget_is_refused_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("vaultsync.finder.REGEXP_WORK_BUDGET", 1000)

    async def scenario() -> None:
        with pytest.raises(InvalidSpec) as caught:
            await find(FetchCache(), Lister(["x" * 500]), spec({"path": "x", "name": {"regexp": "(x+x+)+y"}}))
        assert caught.value.message.startswith(
            "spec.dataFrom[0].find.name.regexp: matching it against the 1 names"
        )

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("data_from", "message"),
    [
        (
            {"find": {"name": {"regexp": "(a"}}},
            "spec.dataFrom[0].find.name.regexp: Value error, does not compile",
        ),
        (
            {"find": {"name": {"regexp": "(?<=a)b"}}},
            "spec.dataFrom[0].find.name.regexp: Value error, does not compile as RE2 (Go's regexp) "
            "reads it: invalid perl operator: (?<=",
        ),
        ({"find": {}}, "spec.dataFrom[0].find: Value error, name, tags or path is required"),
        (
            {"extract": {"key": "a"}, "find": {"path": "a"}},
            "spec.dataFrom[0]: Value error, exactly one of extract",
        ),
        ({}, "spec.dataFrom[0]: Value error, exactly one of extract or find"),
        (
            {"extract": {"key": "a"}, "rewrite": [{"regexp": {"source": "(", "target": ""}}]},
            "spec.dataFrom[0].rewrite[0].regexp.source: Value error, does not compile",
        ),
        (
            {"extract": {"key": "a"}, "rewrite": [{}]},
            "spec.dataFrom[0].rewrite[0]: Value error, exactly one of",
        ),
        ({"find": {"tags": {f"t{i}": "v" for i in range(17)}}}, "spec.dataFrom[0].find.tags: "),
        ({"extract": {"key": "a", "decodingStrategy": "Hex"}}, "spec.dataFrom[0].extract.decodingStrategy: "),
    ],
)
def test_a_bad_find_or_rewrite_is_refused_naming_the_field(data_from: dict[str, Any], message: str) -> None:
    body = {
        "metadata": {"name": "es", "namespace": "ns", "uid": "u"},
        "spec": {"storeRef": {"name": "s"}, "dataFrom": [data_from]},
    }
    with pytest.raises(InvalidSpec) as caught:
        parse_external_secret(body)
    assert caught.value.message.startswith(message), caught.value.message
