"""The fetch cache makes concurrent reads one provider call, serves fresh values, never caches errors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import pytest
from prometheus_client import REGISTRY

from vaultsync.cache import ENTRY_OVERHEAD_BYTES, MAX_BATCH, MAX_VALUE_BYTES, FetchCache
from vaultsync.errors import ProviderError, SecretNotFound, SecretTooLarge, VaultsyncError
from vaultsync.providers.base import RemoteRef, RemoteValue, SecretsClient, StoreContext

T = TypeVar("T")
DB = RemoteRef("prod/db")
API = RemoteRef("prod/api")
SECRET = "s3cr3t-Zebra-Quokka-42"


class CountingClient(SecretsClient):
    """An in-memory vault that records every batch it is asked for."""

    def __init__(self, values: Mapping[str, RemoteValue] | None = None, delay: float = 0.0) -> None:
        self.values: dict[str, RemoteValue] = dict(values or {})
        self.delay = delay
        self.batches: list[list[RemoteRef]] = []
        self.fail_with: BaseException | None = None

    @property
    def calls(self) -> int:
        return len(self.batches)

    async def get_secrets(
        self, refs: Sequence[RemoteRef]
    ) -> Mapping[RemoteRef, RemoteValue | VaultsyncError]:
        self.batches.append(list(refs))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_with is not None:
            raise self.fail_with
        return await super().get_secrets(refs)

    async def get_secret(self, ref: RemoteRef) -> RemoteValue:
        if ref.key not in self.values:
            raise SecretNotFound(f"key {ref.key!r} does not exist")
        return self.values[ref.key]

    async def validate(self) -> None:
        return None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(test: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(test())


def vault(**kwargs: Any) -> CountingClient:
    return CountingClient(
        {"prod/db": RemoteValue(b"db-v1", "1"), "prod/api": RemoteValue(b"api-v1", "7")}, **kwargs
    )


def test_a_hundred_concurrent_reads_of_one_key_make_one_provider_call() -> None:
    async def scenario() -> None:
        cache, client = FetchCache(), vault(delay=0.01)
        results = await asyncio.gather(*(cache.get("store", "fake", client, [DB], 60.0) for _ in range(100)))
        assert client.batches == [[DB]]
        assert all(r == {DB: RemoteValue(b"db-v1", "1")} for r in results)

    run(scenario)


def test_a_key_asked_for_while_it_is_being_read_shares_that_read() -> None:
    async def scenario() -> None:
        cache, client = FetchCache(), vault(delay=0.05)
        first = asyncio.ensure_future(cache.get("store", "fake", client, [DB], 0.0))
        await asyncio.sleep(0.02)  # the read is now in flight, past the batching window
        second = await cache.get("store", "fake", client, [DB], 0.0)
        assert client.calls == 1
        assert second == await first

    run(scenario)


def test_misses_within_the_linger_window_are_batched_into_one_call() -> None:
    async def scenario() -> None:
        cache, client = FetchCache(), vault()
        first, second = await asyncio.gather(
            cache.get("store", "fake", client, [DB], 60.0),
            cache.get("store", "fake", client, [API], 60.0),
        )
        assert client.batches == [[DB, API]]
        assert first == {DB: RemoteValue(b"db-v1", "1")}
        assert second == {API: RemoteValue(b"api-v1", "7")}

    run(scenario)


def test_misses_after_the_linger_window_make_a_call_of_their_own() -> None:
    async def scenario() -> None:
        cache, client = FetchCache(), vault()
        await cache.get("store", "fake", client, [DB], 60.0)
        await cache.get("store", "fake", client, [API], 60.0)
        assert client.batches == [[DB], [API]]

    run(scenario)


def test_misses_for_different_stores_are_never_batched_together() -> None:
    async def scenario() -> None:
        cache, one, two = FetchCache(), vault(), vault()
        await asyncio.gather(
            cache.get("shop/aws", "fake", one, [DB], 60.0),
            cache.get("billing/aws", "fake", two, [DB], 60.0),
        )
        assert (one.batches, two.batches) == ([[DB]], [[DB]])

    run(scenario)


def test_a_batch_never_exceeds_the_maximum_size() -> None:
    async def scenario() -> None:
        refs = [RemoteRef(f"k{i}") for i in range(MAX_BATCH + 20)]
        client = CountingClient({r.key: RemoteValue(r.key.encode()) for r in refs})
        result = await FetchCache().get("store", "fake", client, refs, 60.0)
        assert [len(b) for b in client.batches] == [MAX_BATCH, 20]
        assert result == {r: RemoteValue(r.key.encode()) for r in refs}

    run(scenario)


def test_a_value_younger_than_max_age_is_served_without_a_call() -> None:
    async def scenario() -> None:
        clock = Clock()
        cache, client = FetchCache(clock=clock), vault()
        await cache.get("store", "fake", client, [DB], 60.0)
        clock.now += 60.0
        assert await cache.get("store", "fake", client, [DB], 60.0) == {DB: RemoteValue(b"db-v1", "1")}
        assert client.calls == 1

    run(scenario)


def test_a_value_older_than_max_age_is_read_again() -> None:
    async def scenario() -> None:
        clock = Clock()
        cache, client = FetchCache(clock=clock), vault()
        await cache.get("store", "fake", client, [DB], 60.0)
        client.values["prod/db"] = RemoteValue(b"db-v2", "2")
        clock.now += 61.0
        assert await cache.get("store", "fake", client, [DB], 60.0) == {DB: RemoteValue(b"db-v2", "2")}
        assert client.calls == 2

    run(scenario)


def test_a_max_age_of_zero_always_reads() -> None:
    async def scenario() -> None:
        cache, client = FetchCache(clock=Clock()), vault()
        await cache.get("store", "fake", client, [DB], 60.0)
        await cache.get("store", "fake", client, [DB], 0.0)
        await cache.get("store", "fake", client, [DB], 0.0)
        assert client.calls == 3

    run(scenario)


def test_each_caller_decides_how_old_a_value_it_accepts() -> None:
    async def scenario() -> None:
        clock = Clock()
        cache, client = FetchCache(clock=clock), vault()
        await cache.get("store", "fake", client, [DB], 3600.0)
        clock.now += 120.0
        await cache.get("store", "fake", client, [DB], 3600.0)
        assert client.calls == 1
        await cache.get("store", "fake", client, [DB], 60.0)
        assert client.calls == 2

    run(scenario)


def test_only_the_stale_keys_of_a_request_are_read() -> None:
    async def scenario() -> None:
        clock = Clock()
        cache, client = FetchCache(clock=clock), vault()
        await cache.get("store", "fake", client, [DB], 60.0)
        clock.now += 30.0
        result = await cache.get("store", "fake", client, [DB, API], 60.0)
        assert client.batches == [[DB], [API]]
        assert set(result) == {DB, API}

    run(scenario)


def test_an_error_is_shared_with_every_concurrent_waiter() -> None:
    async def scenario() -> None:
        cache, client = FetchCache(), vault(delay=0.01)
        client.fail_with = ProviderError("vault unreachable")
        results = await asyncio.gather(*(cache.get("store", "fake", client, [DB], 60.0) for _ in range(10)))
        assert client.calls == 1
        errors = [r[DB] for r in results]
        assert all(isinstance(e, ProviderError) and e.message == "vault unreachable" for e in errors)

    run(scenario)


def test_an_error_is_not_cached() -> None:
    async def scenario() -> None:
        cache, client = FetchCache(), vault()
        client.fail_with = ProviderError("vault unreachable")
        first = await cache.get("store", "fake", client, [DB], 3600.0)
        assert isinstance(first[DB], ProviderError)
        client.fail_with = None
        assert await cache.get("store", "fake", client, [DB], 3600.0) == {DB: RemoteValue(b"db-v1", "1")}
        assert client.calls == 2

    run(scenario)


def test_a_missing_key_fails_alone_and_its_batch_neighbours_succeed() -> None:
    async def scenario() -> None:
        cache, client = FetchCache(), vault()
        result = await cache.get("store", "fake", client, [DB, RemoteRef("prod/gone")], 60.0)
        assert result[DB] == RemoteValue(b"db-v1", "1")
        assert isinstance(result[RemoteRef("prod/gone")], SecretNotFound)

    run(scenario)


def test_a_provider_bug_fails_the_waiters_instead_of_hanging_them_and_hides_its_text() -> None:
    async def scenario() -> None:
        cache, client = FetchCache(), vault()
        client.fail_with = RuntimeError(f"crashed while holding {SECRET}")
        result = await asyncio.wait_for(cache.get("store", "fake", client, [DB], 60.0), timeout=5)
        error = result[DB]
        assert isinstance(error, ProviderError)
        assert SECRET not in str(error)
        assert "RuntimeError" in str(error)

    run(scenario)


def test_a_key_the_provider_forgot_to_answer_fails_with_a_provider_error() -> None:
    class Forgetful(CountingClient):
        async def get_secrets(
            self, refs: Sequence[RemoteRef]
        ) -> Mapping[RemoteRef, RemoteValue | VaultsyncError]:
            self.batches.append(list(refs))
            return {}

    async def scenario() -> None:
        result = await FetchCache().get("store", "fake", Forgetful(), [DB], 60.0)
        assert isinstance(result[DB], ProviderError)
        assert "'prod/db'" in str(result[DB])

    run(scenario)


def test_a_waiter_that_is_cancelled_does_not_cancel_the_shared_read() -> None:
    async def scenario() -> None:
        cache, client = FetchCache(), vault(delay=0.03)
        impatient = asyncio.ensure_future(cache.get("store", "fake", client, [DB], 60.0))
        patient = asyncio.ensure_future(cache.get("store", "fake", client, [DB], 60.0))
        await asyncio.sleep(0.01)
        impatient.cancel()
        assert await patient == {DB: RemoteValue(b"db-v1", "1")}
        assert client.calls == 1

    run(scenario)


def changes_seen(cache: FetchCache) -> list[tuple[str, RemoteRef]]:
    seen: list[tuple[str, RemoteRef]] = []
    cache.add_change_listener(lambda store, ref: seen.append((store, ref)))
    return seen


def test_the_change_listener_is_silent_on_the_first_read_and_on_rereads_of_the_same_value() -> None:
    async def scenario() -> None:
        cache, client = FetchCache(), vault()
        seen = changes_seen(cache)
        for _ in range(3):
            await cache.get("store", "fake", client, [DB], 0.0)
        assert client.calls == 3
        assert seen == []

    run(scenario)


def test_the_change_listener_fires_when_the_version_changes() -> None:
    async def scenario() -> None:
        cache, client = FetchCache(), vault()
        seen = changes_seen(cache)
        await cache.get("store", "fake", client, [DB, API], 0.0)
        client.values["prod/db"] = RemoteValue(b"db-v1", "2")
        await cache.get("store", "fake", client, [DB, API], 0.0)
        assert seen == [("store", DB)]

    run(scenario)


def test_the_change_listener_fires_when_the_value_changes_under_the_same_version() -> None:
    async def scenario() -> None:
        cache, client = FetchCache(), vault()
        seen = changes_seen(cache)
        await cache.get("store", "fake", client, [DB], 0.0)
        client.values["prod/db"] = RemoteValue(b"db-rotated", "1")
        await cache.get("store", "fake", client, [DB], 0.0)
        assert seen == [("store", DB)]

    run(scenario)


def test_the_change_listener_is_silent_when_a_read_fails() -> None:
    async def scenario() -> None:
        cache, client = FetchCache(), vault()
        seen = changes_seen(cache)
        await cache.get("store", "fake", client, [DB], 0.0)
        client.fail_with = ProviderError("down")
        await cache.get("store", "fake", client, [DB], 0.0)
        client.fail_with = None
        await cache.get("store", "fake", client, [DB], 0.0)
        assert seen == []

    run(scenario)


def test_pruning_drops_values_not_read_for_a_while() -> None:
    async def scenario() -> None:
        clock = Clock()
        cache, client = FetchCache(clock=clock), vault()
        await cache.get("store", "fake", client, [DB], 60.0)
        clock.now += 100.0
        await cache.get("store", "fake", client, [API], 60.0)
        assert cache.prune(older_than=50.0) == 1
        await cache.get("store", "fake", client, [DB, API], 3600.0)
        assert client.batches == [[DB], [API], [DB]]

    run(scenario)


# Limits: a byte cap with LRU eviction, values too large for a Secret, audit of cache reads.


def sized_vault(size: int, *names: str) -> CountingClient:
    return CountingClient({name: RemoteValue(name[-1].encode() * size, "1") for name in names})


def entry_bytes(store: str, ref: RemoteRef, size: int) -> int:
    return size + len(store) + len(ref.key) + len(ref.version) + ENTRY_OVERHEAD_BYTES


def test_the_cache_evicts_the_least_recently_used_value_to_stay_under_its_byte_cap() -> None:
    a, b, c = RemoteRef("k/a"), RemoteRef("k/b"), RemoteRef("k/c")
    one = entry_bytes("s", a, 1000)

    async def scenario() -> None:
        cache, client = FetchCache(clock=Clock(), max_bytes=2 * one), sized_vault(1000, "k/a", "k/b", "k/c")
        await cache.get("s", "fake", client, [a], 60.0)
        await cache.get("s", "fake", client, [b], 60.0)
        await cache.get("s", "fake", client, [a], 60.0)  # a is now the most recently used
        assert client.batches == [[a], [b]]
        await cache.get("s", "fake", client, [c], 60.0)  # evicts b, not a
        assert cache.size == 2 * one <= 2 * one
        await cache.get("s", "fake", client, [a], 60.0)
        assert client.batches == [[a], [b], [c]]
        await cache.get("s", "fake", client, [b], 60.0)
        assert client.batches == [[a], [b], [c], [b]]

    run(scenario)


def test_the_cache_size_metric_follows_insertions_evictions_and_pruning() -> None:
    a, b = RemoteRef("k/a"), RemoteRef("k/b")

    async def scenario() -> None:
        clock = Clock()
        cache, client = FetchCache(clock=clock, max_bytes=10**6), sized_vault(5000, "k/a", "k/b")
        evicted = REGISTRY.get_sample_value("vaultsync_cache_evictions_total") or 0.0
        await cache.get("s", "fake", client, [a, b], 60.0)
        assert REGISTRY.get_sample_value("vaultsync_cache_bytes") == 2 * entry_bytes("s", a, 5000)
        assert cache.prune(older_than=-1.0) == 2  # every entry is older than a second from now
        assert REGISTRY.get_sample_value("vaultsync_cache_bytes") == 0
        small = FetchCache(clock=clock, max_bytes=entry_bytes("s", a, 5000))
        await small.get("s", "fake", client, [a], 60.0)
        await small.get("s", "fake", client, [b], 60.0)
        assert REGISTRY.get_sample_value("vaultsync_cache_evictions_total") == evicted + 1
        assert REGISTRY.get_sample_value("vaultsync_cache_bytes") == small.size == entry_bytes("s", b, 5000)

    run(scenario)


def test_a_thousand_large_values_never_hold_more_than_the_cap() -> None:
    refs = [RemoteRef(f"k/{i}") for i in range(1000)]

    async def scenario() -> None:
        cap = 2 * 1024 * 1024
        cache = FetchCache(clock=Clock(), max_bytes=cap)
        client = CountingClient({r.key: RemoteValue(b"x" * 100_000, "1") for r in refs})
        for chunk in range(0, 1000, 50):
            await cache.get("s", "fake", client, refs[chunk : chunk + 50], 60.0)
            assert cache.size <= cap

    run(scenario)


def test_eviction_does_not_break_single_flight() -> None:
    a, b = RemoteRef("k/a"), RemoteRef("k/b")

    async def scenario() -> None:
        cache = FetchCache(max_bytes=1)  # every value is evicted as soon as it is kept
        client = sized_vault(10, "k/a", "k/b")
        client.delay = 0.01
        results = await asyncio.gather(*(cache.get("s", "fake", client, [a, b], 60.0) for _ in range(50)))
        assert client.batches == [[a, b]]
        assert all(r[a] == RemoteValue(b"a" * 10, "1") for r in results)
        assert cache.size == 0

    run(scenario)


def test_a_value_larger_than_a_secret_can_hold_is_refused_naming_the_key_and_never_cached() -> None:
    async def scenario() -> None:
        client = CountingClient({"prod/huge": RemoteValue(SECRET.encode() * (MAX_VALUE_BYTES // 10), "1")})
        cache = FetchCache(clock=Clock())
        huge = RemoteRef("prod/huge")
        (result,) = (await cache.get("s", "fake", client, [huge], 60.0)).values()
        assert isinstance(result, SecretTooLarge)
        assert "'prod/huge'" in result.message
        assert SECRET not in result.message
        assert cache.size == 0
        await cache.get("s", "fake", client, [huge], 60.0)
        assert client.calls == 2

    run(scenario)


def test_a_value_of_exactly_the_limit_is_kept() -> None:
    async def scenario() -> None:
        client = CountingClient({"prod/big": RemoteValue(b"x" * MAX_VALUE_BYTES, "1")})
        (result,) = (await FetchCache().get("s", "fake", client, [RemoteRef("prod/big")], 60.0)).values()
        assert isinstance(result, RemoteValue)

    run(scenario)


def test_a_value_served_from_the_cache_is_audited_with_who_asked(caplog: pytest.LogCaptureFixture) -> None:
    store = StoreContext("ClusterSecretStore", "shared", None)

    async def scenario() -> None:
        cache, client = FetchCache(clock=Clock()), vault()
        await cache.get("s", "fake", client, [DB], 60.0, context=store, requested_by="team-a/app")
        caplog.clear()
        await cache.get("s", "fake", client, [DB, API], 60.0, context=store, requested_by="tenant/es")

    with caplog.at_level(logging.INFO, logger="vaultsync.audit"):
        run(scenario)
    lines = {r.getMessage(): r.audit for r in caplog.records}  # type: ignore[attr-defined]
    assert lines["cache read"] == {
        "store": "ClusterSecretStore shared",
        "provider": "fake",
        "keys": ["prod/db"],
        "requestedBy": ["tenant/es"],
        "source": "hit",
    }
    assert lines["provider read"]["keys"] == ["prod/api"]
    assert "db-v1" not in caplog.text


def test_a_repeated_cache_hit_is_audited_once_an_hour_and_again_for_a_new_version_or_reader(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each reader's access to each version through each store is on record, without a line
    per refresh: a hit like the last one logged is logged again only after an hour."""
    store = StoreContext("ClusterSecretStore", "shared", None)
    hits: list[tuple[str, list[str]]] = []

    async def scenario() -> None:
        clock = Clock()
        cache, client = FetchCache(clock=clock), vault()
        await cache.get("s", "fake", client, [DB], 60.0, context=store, requested_by="team-a/app")

        async def refresh(who: str) -> None:
            caplog.clear()
            clock.now += 1
            await cache.get("s", "fake", client, [DB], 7200.0, context=store, requested_by=who)
            lines = [r.audit for r in caplog.records if r.getMessage() == "cache read"]  # type: ignore[attr-defined]
            hits.append((who, [line["requestedBy"][0] for line in lines]))

        await refresh("tenant/es")  # first hit: logged
        await refresh("tenant/es")  # same again: not
        await refresh("other/es")  # another reader: logged
        client.values["prod/db"] = RemoteValue(b"db-v2", "2")
        await cache.get("s", "fake", client, [DB], 0.0, context=store, requested_by="team-a/app")
        await refresh("tenant/es")  # a new version served: logged
        await refresh("tenant/es")
        clock.now += 3600
        await refresh("tenant/es")  # an hour on: logged again

    with caplog.at_level(logging.INFO, logger="vaultsync.audit"):
        run(scenario)
    assert hits == [
        ("tenant/es", ["tenant/es"]),
        ("tenant/es", []),
        ("other/es", ["other/es"]),
        ("tenant/es", ["tenant/es"]),
        ("tenant/es", []),
        ("tenant/es", ["tenant/es"]),
    ]


def test_joining_a_read_in_flight_is_audited_for_the_joiner(caplog: pytest.LogCaptureFixture) -> None:
    store = StoreContext("SecretStore", "aws", "team-a")

    async def scenario() -> None:
        cache, client = FetchCache(), vault(delay=0.2)
        first = asyncio.ensure_future(
            cache.get("s", "fake", client, [DB], 60.0, context=store, requested_by="team-a/one")
        )
        await asyncio.sleep(0.02)  # the read is flushed and in flight
        await cache.get("s", "fake", client, [DB], 60.0, context=store, requested_by="team-a/two")
        await first

    with caplog.at_level(logging.INFO, logger="vaultsync.audit"):
        run(scenario)
    shared = [r.audit for r in caplog.records if r.getMessage() == "cache read"]  # type: ignore[attr-defined]
    assert [a["requestedBy"] for a in shared] == [["team-a/two"]]
    assert shared[0]["source"] == "shared"
