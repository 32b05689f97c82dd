"""The cache confirms held values by their stamps, reads only what changed, and still
reads every value at least once per `--value-max-age` (pure logic: an in-memory vault)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from tests.unit.test_cache import Clock, CountingClient

from vaultsync.cache import FetchCache
from vaultsync.errors import ProviderError, SecretNotFound
from vaultsync.providers.base import RemoteRef, RemoteValue

A, B, C = RemoteRef("a"), RemoteRef("b"), RemoteRef("c")
DAY = 24 * 3600.0


class ListingClient(CountingClient):
    """Answers stamps for every key held, as one listing does (AWS)."""

    def __init__(self) -> None:
        super().__init__({r.key: RemoteValue(b"v1-" + r.key.encode(), "1", "1") for r in (A, B, C)})
        self.probes: list[tuple[list[RemoteRef], list[RemoteRef]]] = []
        self.probe_error: Exception | None = None

    async def stamps(
        self, due: Sequence[RemoteRef], known: Sequence[RemoteRef]
    ) -> Mapping[RemoteRef, str | None] | None:
        self.probes.append((list(due), sorted(known, key=lambda r: r.key)))
        if self.probe_error is not None:
            raise self.probe_error
        return {r: self.values[r.key].stamp if r.key in self.values else None for r in [*due, *known]}

    def put(self, ref: RemoteRef, value: bytes, stamp: str) -> None:
        self.values[ref.key] = RemoteValue(value, stamp, stamp)


def read_keys(client: CountingClient) -> list[str]:
    return [r.key for batch in client.batches for r in batch]


async def settle() -> None:
    await asyncio.sleep(0.05)  # reads started by a probe have a linger of their own


def test_an_unchanged_value_is_confirmed_not_read() -> None:
    async def scenario() -> None:
        clock, client = Clock(), ListingClient()
        cache = FetchCache(clock=clock)
        await cache.get("s", "p", client, [A], 60.0)
        clock.now += 61
        got = await cache.get("s", "p", client, [A], 60.0)
        assert got == {A: RemoteValue(b"v1-a", "1")}
        assert read_keys(client) == ["a"] and len(client.probes) == 1

    asyncio.run(scenario())


def test_one_probe_confirms_the_other_keys_held_and_sends_the_users_of_the_changed_one() -> None:
    async def scenario() -> None:
        clock, client = Clock(), ListingClient()
        cache = FetchCache(clock=clock)
        changed: list[RemoteRef] = []
        cache.add_change_listener(lambda store, ref: changed.append(ref))
        await cache.get("s", "p", client, [A, B, C], 60.0)
        client.put(C, b"v2-c", "2")
        clock.now += 61
        await cache.get("s", "p", client, [A], 60.0)
        await settle()
        assert client.probes == [([A], [B, C])]
        # C changed: its users are told to refresh now; nothing reads it before one asks (a
        # key no ExternalSecret uses any more is never read again).
        assert read_keys(client) == ["a", "b", "c"]
        assert changed == [C]
        got = await cache.get("s", "p", client, [B, C], 60.0)  # B confirmed by that probe, C read
        assert got[C] == RemoteValue(b"v2-c", "2") and len(client.probes) == 1
        assert read_keys(client) == ["a", "b", "c", "c"]

    asyncio.run(scenario())


def test_a_value_is_read_again_at_its_maximum_age_although_unchanged() -> None:
    async def scenario() -> None:
        clock, client = Clock(), ListingClient()
        cache = FetchCache(clock=clock, value_max_age=DAY)
        await cache.get("s", "p", client, [A], 60.0)
        clock.now += DAY
        await cache.get("s", "p", client, [A], 60.0)
        assert read_keys(client) == ["a", "a"] and client.probes == []

    asyncio.run(scenario())


def test_a_failed_probe_reads_instead_and_a_missing_key_is_read_for_its_error() -> None:
    async def scenario() -> None:
        clock, client = Clock(), ListingClient()
        cache = FetchCache(clock=clock)
        await cache.get("s", "p", client, [A, B], 60.0)
        client.probe_error = ProviderError("listing refused")
        clock.now += 61
        await cache.get("s", "p", client, [A], 60.0)
        client.probe_error = None
        del client.values["b"]
        clock.now += 61
        got = await cache.get("s", "p", client, [B], 60.0)
        assert read_keys(client) == ["a", "b", "a", "b"]
        assert isinstance(got[B], SecretNotFound)  # the read says so

    asyncio.run(scenario())


def test_a_forced_refresh_reads_without_probing() -> None:
    async def scenario() -> None:
        client = ListingClient()
        cache = FetchCache()
        await cache.get("s", "p", client, [A], 60.0)
        await cache.get("s", "p", client, [A], 0.0)
        assert read_keys(client) == ["a", "a"] and client.probes == []

    asyncio.run(scenario())


def test_a_client_without_change_detection_is_read_as_before() -> None:
    async def scenario() -> None:
        clock, client = Clock(), CountingClient({"a": RemoteValue(b"x", "1", "1")})
        cache = FetchCache(clock=clock)
        await cache.get("s", "p", client, [A], 60.0)
        clock.now += 61
        await cache.get("s", "p", client, [A], 60.0)
        assert read_keys(client) == ["a", "a"]

    asyncio.run(scenario())


def test_refreshes_asking_while_a_probe_is_in_flight_wait_for_it_instead_of_probing_again() -> None:
    class SlowListing(ListingClient):
        async def stamps(
            self, due: Sequence[RemoteRef], known: Sequence[RemoteRef]
        ) -> Mapping[RemoteRef, str | None] | None:
            answer = await super().stamps(due, known)
            await asyncio.sleep(0.1)  # a listing of many pages
            return answer

    async def scenario() -> None:
        clock, client = Clock(), SlowListing()
        cache = FetchCache(clock=clock)
        await cache.get("s", "p", client, [A, B, C], 60.0)
        clock.now += 61
        first = asyncio.ensure_future(cache.get("s", "p", client, [A], 60.0))
        await asyncio.sleep(0.05)  # the listing for A is in flight
        second = await cache.get("s", "p", client, [B], 60.0)
        third = await cache.get("s", "p", client, [C], 60.0)  # answered by the same listing
        assert (await first)[A] == RemoteValue(b"v1-a", "1")
        assert second[B] == RemoteValue(b"v1-b", "1") and third[C] == RemoteValue(b"v1-c", "1")
        assert len(client.probes) == 1 and read_keys(client) == ["a", "b", "c"]

    asyncio.run(scenario())


def test_refreshes_of_held_values_coming_due_close_together_go_out_as_one_batch() -> None:
    async def scenario() -> None:
        clock = Clock()
        client = CountingClient({r.key: RemoteValue(r.key.encode()) for r in (A, B)})  # no stamps
        cache = FetchCache(clock=clock)
        await cache.get("s", "p", client, [A], 60.0)
        await cache.get("s", "p", client, [B], 60.0)
        clock.now += 61

        async def later(ref: RemoteRef, delay: float) -> None:
            await asyncio.sleep(delay)
            await cache.get("s", "p", client, [ref], 60.0)

        await asyncio.gather(later(A, 0.0), later(B, 0.2))  # 0.2 s apart: within 1 % of 60 s
        assert client.batches[2:] == [[A, B]]

    asyncio.run(scenario())


class GatedListingClient(ListingClient):
    """A listing the test lets answer: `entered` is set while one is held at the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def stamps(
        self, due: Sequence[RemoteRef], known: Sequence[RemoteRef]
    ) -> Mapping[RemoteRef, str | None] | None:
        self.entered.set()
        await self.gate.wait()
        return await super().stamps(due, known)


def test_a_probe_batch_flushed_early_by_the_probe_before_it_is_not_run_again_by_its_timer() -> None:
    """A refresh arriving while its store's probe is in flight waits in a batch that the end
    of that probe flushes; the batch's own linger timer must not run it a second time (which
    probed again and read values just confirmed: 2 extra requests per key in Vault's case)."""

    async def scenario() -> None:
        clock, client = Clock(), GatedListingClient()
        cache = FetchCache(clock=clock)
        client.gate.set()
        await cache.get("s", "p", client, [A, B], 60.0)
        client.gate.clear()
        clock.now += 61
        first = asyncio.create_task(cache.get("s", "p", client, [A], 60.0))
        await client.entered.wait()  # the store's probe is in flight, held at the gate
        second = asyncio.create_task(cache.get("s", "p", client, [B], 60.0))
        await asyncio.sleep(0)  # B waits in the next probe batch, its linger timer running
        client.gate.set()
        await asyncio.gather(first, second)
        await asyncio.sleep(0.6)  # past B's linger (0.5 s at most)
        assert len(client.probes) == 1  # the first listing answered B as well
        assert read_keys(client) == ["a", "b"]  # nothing read again

    asyncio.run(scenario())


def test_the_users_of_keys_a_listing_found_changed_share_one_read() -> None:
    """A rotation of many keys is one batch, not a read per key: the users the listing sent
    to refresh arrive one after another (each sync has work before its read), and the first
    of them waits the gathering window for the others instead of a first read's few ms."""

    async def scenario() -> None:
        clock, client = Clock(), ListingClient()
        cache = FetchCache(clock=clock)
        await cache.get("s", "p", client, [A, B, C], 60.0)
        client.put(B, b"v2-b", "2")
        client.put(C, b"v2-c", "2")
        clock.now += 61
        await cache.get("s", "p", client, [A], 60.0)
        await settle()

        async def user(ref: RemoteRef, after: float) -> None:
            await asyncio.sleep(after)
            await cache.get("s", "p", client, [ref], 60.0)

        await asyncio.gather(user(B, 0.0), user(C, 0.05))
        assert client.batches[-1] == [B, C]
        assert read_keys(client) == ["a", "b", "c", "b", "c"]

    asyncio.run(scenario())
