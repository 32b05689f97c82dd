"""Several stores in one ExternalSecret: which store each entry reads, and which field names it.

ESO's `sourceRef.storeRef` per `data` and `dataFrom` entry; an entry without one reads
`spec.storeRef`. The same key name in two stores are two values, never confused.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.unit.test_finder import Lister

from vaultsync.cache import FetchCache
from vaultsync.errors import InvalidSpec, ProviderError, SecretNotFound
from vaultsync.finder import find_all
from vaultsync.models import ExternalSecretSpec, StoreRef, parse_external_secret
from vaultsync.providers.base import RemoteRef, RemoteValue
from vaultsync.scheduler import _store_of
from vaultsync.templating import build_data, refs_by_store, remote_refs, source_field

MAIN = StoreRef(name="main")
OTHER = StoreRef(name="other", kind="ClusterSecretStore")


def spec(**fields: Any) -> ExternalSecretSpec:
    return ExternalSecretSpec.model_validate({"storeRef": {"name": "main"}, **fields})


def sourced(name: str, kind: str = "ClusterSecretStore") -> dict[str, Any]:
    return {"sourceRef": {"storeRef": {"name": name, "kind": kind}}}


def test_each_entry_reads_its_own_store_and_the_rest_read_the_spec_store() -> None:
    es = spec(
        dataFrom=[{"extract": {"key": "app"}, **sourced("other")}],
        data=[
            {"secretKey": "a", "remoteRef": {"key": "db"}},
            {"secretKey": "b", "remoteRef": {"key": "db"}, **sourced("other")},
        ],
    )
    assert refs_by_store(es) == {MAIN: [RemoteRef("db")], OTHER: [RemoteRef("app"), RemoteRef("db")]}


def test_a_spec_store_no_entry_reads_is_not_resolved() -> None:
    es = spec(data=[{"secretKey": "a", "remoteRef": {"key": "db"}, **sourced("other")}])
    assert list(refs_by_store(es)) == [OTHER]


def test_the_same_key_in_two_stores_gives_each_entry_its_own_value() -> None:
    es = spec(
        data=[
            {"secretKey": "a", "remoteRef": {"key": "db"}},
            {"secretKey": "b", "remoteRef": {"key": "db"}, **sourced("other")},
        ]
    )
    main = {RemoteRef("db"): RemoteValue(b"from-main")}
    other = {RemoteRef("db"): RemoteValue(b"from-other")}
    data, _ = asyncio.run(build_data(es, main, {MAIN: main, OTHER: other}))
    assert data == {"a": b"from-main", "b": b"from-other"}


def test_an_error_of_one_store_names_the_entry_that_reads_it() -> None:
    es = spec(
        data=[
            {"secretKey": "a", "remoteRef": {"key": "db"}},
            {"secretKey": "b", "remoteRef": {"key": "db"}, **sourced("other")},
        ]
    )
    main = {RemoteRef("db"): RemoteValue(b"from-main")}
    other = {RemoteRef("db"): ProviderError("vault answered 503")}
    with pytest.raises(ProviderError, match=r"^spec\.data\[1\]\.remoteRef\.key: vault answered 503$"):
        asyncio.run(build_data(es, main, {MAIN: main, OTHER: other}))


def test_the_field_naming_a_store_is_the_first_entry_that_names_it() -> None:
    es = spec(
        dataFrom=[{"extract": {"key": "app"}, **sourced("main", "SecretStore")}],
        data=[
            {"secretKey": "a", "remoteRef": {"key": "db"}, **sourced("main", "SecretStore")},
            {"secretKey": "b", "remoteRef": {"key": "db"}, **sourced("other")},
        ],
    )
    assert source_field(es, OTHER) == "spec.data[1].sourceRef.storeRef.name"
    # spec.storeRef names "main" too, but no entry reads it through spec.storeRef.
    assert source_field(es, MAIN) == "spec.dataFrom[0].sourceRef.storeRef.name"
    plain = spec(data=[{"secretKey": "a", "remoteRef": {"key": "db"}}])
    assert source_field(plain, MAIN) == "spec.storeRef.name"


def test_a_source_ref_without_a_store_name_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"data\.0\.sourceRef\.storeRef\.name"):
        spec(data=[{"secretKey": "a", "remoteRef": {"key": "db"}, "sourceRef": {"storeRef": {"name": ""}}}])


def test_a_find_entry_lists_and_reads_its_own_store() -> None:
    es = spec(
        dataFrom=[
            {"find": {"path": "app/"}},
            {"find": {"path": "app/"}, **sourced("other")},
            {"extract": {"key": "cfg"}, **sourced("other")},
        ]
    )
    # Before the listings, each store an entry reads is there, even one read only by finds.
    assert refs_by_store(es) == {MAIN: [], OTHER: [RemoteRef("cfg")]}
    found = {0: ("app/a",), 1: ("app/a", "app/b")}
    assert refs_by_store(es, found) == {
        MAIN: [RemoteRef("app/a")],
        OTHER: [RemoteRef("app/a"), RemoteRef("app/b"), RemoteRef("cfg")],
    }
    assert remote_refs(es, found) == [RemoteRef("app/a"), RemoteRef("app/b"), RemoteRef("cfg")]
    main = {RemoteRef("app/a"): RemoteValue(b"main-a")}
    other = {
        RemoteRef("app/a"): RemoteValue(b"other-a"),
        RemoteRef("app/b"): SecretNotFound("gone since listed"),
        RemoteRef("cfg"): RemoteValue(b'{"c": "1"}'),
    }
    data, _ = asyncio.run(build_data(es, main, {MAIN: main, OTHER: other}, found=found))
    # Entry 1 overrides entry 0's app_a with its own store's value; app/b, deleted, is left out.
    assert data == {"app_a": b"other-a", "c": b"1"}
    assert source_field(es, OTHER) == "spec.dataFrom[1].sourceRef.storeRef.name"


def test_find_all_lists_only_the_finds_of_one_store_and_counts_the_others() -> None:
    es = spec(dataFrom=[{"find": {"path": "a/"}}, {"find": {"path": "b/"}, **sourced("other")}])
    main, other = Lister(["a/1", "a/2"]), Lister(["b/1", "b/2"])

    async def scenario() -> None:
        cache = FetchCache()
        first = await find_all(cache, "main", "fake", main, es, 60.0, MAIN)
        second = await find_all(cache, "other", "fake", other, es, 60.0, OTHER)
        assert (first, second) == ({0: ("a/1", "a/2")}, {1: ("b/1", "b/2")})
        assert ([q.path for q in main.queries], [q.path for q in other.queries]) == (["a/"], ["b/"])
        with pytest.raises(InvalidSpec) as caught:
            await find_all(cache, "other", "fake", other, es, 60.0, OTHER, counted=499)
        assert caught.value.message.startswith(
            "spec.dataFrom[1].find: the find entries match 501 remote keys"
        )

    asyncio.run(scenario())


def test_without_spec_store_every_entry_reads_its_own_and_a_missing_one_is_refused() -> None:
    own = {"sourceRef": {"storeRef": {"name": "main"}}}
    es = ExternalSecretSpec.model_validate(
        {
            "dataFrom": [{"extract": {"key": "app"}, **sourced("other")}],
            "data": [{"secretKey": "a", "remoteRef": {"key": "db"}, **own}],
        }
    )
    assert refs_by_store(es) == {OTHER: [RemoteRef("app")], MAIN: [RemoteRef("db")]}
    assert source_field(es, MAIN) == "spec.data[0].sourceRef.storeRef.name"
    sourced_entry = {"secretKey": "a", "remoteRef": {"key": "db"}, **own}
    for orphan in (
        {"data": [sourced_entry, {"secretKey": "b", "remoteRef": {"key": "db"}}]},
        {"data": [sourced_entry], "dataFrom": [{"extract": {"key": "x"}}]},
    ):
        with pytest.raises(InvalidSpec, match=r"spec\.storeRef: Value error, required unless every entry"):
            parse_external_secret({"metadata": {"name": "n", "namespace": "ns", "uid": "u"}, "spec": orphan})
    # The bulkhead of such an ExternalSecret is its first entry's store.
    body = {"spec": {"dataFrom": [{"extract": {"key": "app"}, **sourced("other")}], "data": []}}
    assert _store_of(("ns", "n"), body) == "ClusterSecretStore//other"
