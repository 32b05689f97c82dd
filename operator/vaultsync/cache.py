"""The shared fetch cache: one provider read serves every ExternalSecret that needs that key.

Three mechanisms keep vault calls (and bills) proportional to distinct keys,
not to ExternalSecrets:

- single-flight: a key already being read is awaited, not read again;
- micro-batching: misses for one store arriving within a few milliseconds go
  out as one `get_secrets` call (AWS turns that into BatchGetSecretValue);
- freshness by the asker: each caller says how old a value it accepts (a
  scheduled refresh accepts one younger than its refresh interval), so ten
  ExternalSecrets sharing a key cause one read per interval, not ten.

When a read returns a different version or value than the previous read of
that key, `on_change` fires so every ExternalSecret that uses the key can be
refreshed at once (rotation fan-out) from the value just read.

Errors are shared with the callers waiting on the same read but never cached.

Memory is bounded by tenants' data, not by the operator: a value larger than a
Secret can hold is refused as `SecretTooLarge` and never kept, and the values
kept are capped in total bytes (`--cache-max-bytes`), least recently used
evicted first. Eviction only costs a provider read later: in-flight reads are
not entries (single-flight is unaffected), and the last good data lives in the
target Secret, not here (fail static is unaffected). An evicted key's next read
cannot tell that it rotated, so that rotation reaches the other ExternalSecrets
using the key at their own refresh instead of at once.

Change detection (see docs/benchmarks.md, "Provider cost"): a value the cache
holds but that is older than the asker accepts is not read again at once. Its
store's client is asked first for the *stamps* of the keys (AWS: one listing
answers every key of the store; Vault KV v2: one metadata request per key); a
key whose stamp equals the one of the value held is confirmed current and
served without a read, and only keys that are new, changed, gone or older than
`--value-max-age` are read, together, in batches. A listing that shows other
keys of the store changed reads those too at once, so the rotation reaches
their users at once. A client without a cheaper way than reading
(`stamps` returns None) is simply read, as before.

Listings (`dataFrom.find`) are shared the same way: one `list_keys` call per store, query
and selection in flight, its result reused by every asker that accepts its age (so N
ExternalSecrets with the same find list once per interval), errors shared but not kept.
What is kept is the selection (the names the regexp matched, bounded by the caller), not
the whole listing; at most LISTINGS_MAX of them, least recently used dropped first.

Every value served, from the cache or a shared read, is audited with who asked (a hit
serving the same versions to the same reader again, at most once an hour: audit.py).
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from vaultsync import audit
from vaultsync.constants import SECRET_SIZE_LIMIT, VALUE_MAX_AGE_SECONDS
from vaultsync.errors import ProviderError, SecretTooLarge, ThrottledError, VaultsyncError
from vaultsync.metrics import CACHE_BYTES, CACHE_EVICTIONS, CACHE_LOOKUPS, PROVIDER_CALLS, PROVIDER_THROTTLED
from vaultsync.providers.base import FindQuery, RemoteRef, RemoteValue, SecretsClient, StoreContext

CacheKey = tuple[str, RemoteRef]
# (store, what the provider lists, what of it the caller selects)
ListingKey = tuple[str, FindQuery, str]
Selection = Callable[[list[str]], tuple[str, ...]]
Result = RemoteValue | VaultsyncError
ChangeListener = Callable[[str, RemoteRef], None]

BATCH_LINGER_SECONDS = 0.005
# Refreshes of values already held wait this share of the interval they accept (at most
# GATHER_MAX_SECONDS) for others of the same store, so they go out as one batch or one
# listing; a first read never waits longer than BATCH_LINGER_SECONDS.
GATHER_FRACTION = 0.01
GATHER_MAX_SECONDS = 0.5
# A listing that confirms a value older than this share of `--value-max-age` reads it
# with the others read then, rather than alone when it reaches the age.
AGE_GATHER = 0.9
# At most this many changed keys remembered for their users' gathering window.
CHANGED_REMEMBERED = 100_000
# No single value can fit in a Secret beyond this, so none is worth holding.
MAX_VALUE_BYTES = SECRET_SIZE_LIMIT
MAX_BATCH = 100
CACHE_MAX_BYTES = 128 * 1024 * 1024
# What one entry costs besides its value: key strings, the entry, the dict slot.
ENTRY_OVERHEAD_BYTES = 256
LISTINGS_MAX = 1000


@dataclass
class _Listing:
    names: tuple[str, ...]
    listed_at: float
    used_at: float


@dataclass
class _Entry:
    value: RemoteValue
    fetched_at: float  # when the value was read
    checked_at: float  # when it was last known current: read, or its stamp confirmed
    used_at: float  # when someone last asked for it
    size: int


@dataclass
class _PendingBatch:
    client: SecretsClient
    provider: str
    context: StoreContext | None
    probe: bool  # a change-detection probe, else a read
    refs: list[RemoteRef] = field(default_factory=list)
    requested_by: set[str] = field(default_factory=set)
    max_ages: dict[RemoteRef, float] = field(default_factory=dict)  # probes: what each asker accepts
    # Set when it goes out: its linger timer finds a batch the end of the store's previous
    # probe already flushed, and must not run it again (probing and reading once more).
    flushed: bool = False


class FetchCache:
    """Shared by every reconcile; keyed by store identity and remote ref."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        max_bytes: int = CACHE_MAX_BYTES,
        value_max_age: float = VALUE_MAX_AGE_SECONDS,
    ) -> None:
        self._clock = clock
        self._max_bytes = max_bytes
        self._value_max_age = value_max_age
        self._bytes = 0
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()  # least recently used first
        self._by_store: dict[str, set[RemoteRef]] = {}
        self._inflight: dict[CacheKey, asyncio.Future[Result]] = {}
        self._pending: dict[tuple[str, bool], _PendingBatch] = {}
        self._listeners: list[ChangeListener] = []
        self._reads: set[asyncio.Task[None]] = set()
        # Stores with a probe in flight: the next one waits for it (one listing answers all).
        self._probing: set[str] = set()
        # Held values a listing found changed and dropped: their users are being refreshed,
        # and the first of them to ask waits the gathering window (not the few milliseconds
        # of a first read) so that the users of every changed key share one batch.
        self._changed: set[CacheKey] = set()
        self._listings: OrderedDict[ListingKey, _Listing] = OrderedDict()
        self._listing_inflight: dict[ListingKey, asyncio.Future[tuple[str, ...]]] = {}
        self._hit_audit = audit.CacheHitAudit(clock)

    def add_change_listener(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    async def get(
        self,
        store_key: str,
        provider: str,
        client: SecretsClient,
        refs: Sequence[RemoteRef],
        max_age: float,
        *,
        context: StoreContext | None = None,
        requested_by: str = "",
    ) -> dict[RemoteRef, Result]:
        """Values for `refs`, no older than `max_age` seconds (0 = read now).

        `context` and `requested_by` go to the audit log of the reads this causes.
        """
        now = self._clock()
        results: dict[RemoteRef, Result] = {}
        waiting: dict[RemoteRef, asyncio.Future[Result]] = {}
        hits: list[tuple[RemoteRef, str]] = []
        shared: list[RemoteRef] = []
        for ref in dict.fromkeys(refs):
            key = (store_key, ref)
            entry = self._entries.get(key)
            young = entry is not None and now - entry.fetched_at < self._value_max_age
            if entry is not None:
                entry.used_at = now
            if entry is not None and young and max_age > 0 and now - entry.checked_at <= max_age:
                CACHE_LOOKUPS.labels(result="hit").inc()
                self._entries.move_to_end(key)
                results[ref] = entry.value
                hits.append((ref, entry.value.version))
            elif key in self._inflight:
                CACHE_LOOKUPS.labels(result="shared").inc()
                waiting[ref] = self._inflight[key]
                shared.append(ref)
            else:
                # A value held and still young is confirmed by its stamp before any read.
                probe = entry is not None and young and max_age > 0 and bool(entry.value.stamp)
                CACHE_LOOKUPS.labels(result="probe" if probe else "miss").inc()
                changed = key in self._changed
                self._changed.discard(key)
                linger = _gather(max_age) if entry is not None or changed else BATCH_LINGER_SECONDS
                batch = _PendingBatch(client, provider, context, probe)
                waiting[ref] = self._enqueue(store_key, batch, ref, requested_by, linger, max_age)
        if context is not None and hits:
            self._hit_audit.served(context, provider, hits, requested_by)
        if context is not None and shared:
            audit.cache_read(context, provider, shared, requested_by, "shared")
        for ref, future in waiting.items():
            results[ref] = await asyncio.shield(future)
        return results

    async def list_keys(
        self,
        key: ListingKey,
        provider: str,
        client: SecretsClient,
        select: Selection,
        limit: int,
        max_age: float,
    ) -> tuple[str, ...]:
        """The names `select` keeps of `client.list_keys(query, limit)`, listed at most
        `max_age` seconds ago (0 = list now); one listing in flight per `key`."""
        now = self._clock()
        kept = self._listings.get(key)
        if kept is not None and max_age > 0 and now - kept.listed_at <= max_age:
            CACHE_LOOKUPS.labels(result="hit").inc()
            kept.used_at = now
            self._listings.move_to_end(key)
            return kept.names
        future = self._listing_inflight.get(key)
        if future is None:
            CACHE_LOOKUPS.labels(result="miss").inc()
            future = asyncio.get_running_loop().create_future()
            self._listing_inflight[key] = future
            task = asyncio.get_running_loop().create_task(
                self._list(key, provider, client, select, limit, future)
            )
            self._reads.add(task)
            task.add_done_callback(self._reads.discard)
        else:
            CACHE_LOOKUPS.labels(result="shared").inc()
        return await asyncio.shield(future)

    async def _list(
        self,
        key: ListingKey,
        provider: str,
        client: SecretsClient,
        select: Selection,
        limit: int,
        future: asyncio.Future[tuple[str, ...]],
    ) -> None:
        PROVIDER_CALLS.labels(provider=provider, operation="list").inc()
        try:
            listed = await client.list_keys(key[1], limit)
            # Selecting runs a tenant's regexp over up to `limit` names: off the event loop.
            names = await asyncio.to_thread(select, listed)
        except Exception as exc:  # a provider bug must not hang every waiter either
            error = (
                exc
                if isinstance(exc, VaultsyncError)
                else ProviderError(f"provider {provider!r} failed to list: {type(exc).__name__}")
            )
            del exc
            future.set_exception(error)
            future.exception()  # retrieved: waiters that were cancelled meanwhile leave no warning
        else:
            now = self._clock()
            self._listings[key] = _Listing(names, now, now)
            self._listings.move_to_end(key)
            while len(self._listings) > LISTINGS_MAX:
                self._listings.popitem(last=False)
            future.set_result(names)
        finally:
            del self._listing_inflight[key]

    @property
    def size(self) -> int:
        """Bytes the kept values are counted as (values plus a fixed overhead per entry)."""
        return self._bytes

    def prune(self, older_than: float) -> int:
        """Drops entries nobody asked for in `older_than` seconds; returns how many."""
        limit = self._clock() - older_than
        stale = [k for k, e in self._entries.items() if e.used_at < limit]
        for key in stale:
            self._drop(key)
        unused = [k for k, listing in self._listings.items() if listing.used_at < limit]
        for listing_key in unused:
            del self._listings[listing_key]
        return len(stale) + len(unused)

    def _keep(self, key: CacheKey, value: RemoteValue, now: float) -> RemoteValue | None:
        """Stores `value`, evicting the least recently used beyond the cap; the previous value."""
        previous = self._drop(key)
        size = len(value.value) + len(key[0]) + len(key[1].key) + len(key[1].version) + ENTRY_OVERHEAD_BYTES
        size += len(value.stamp)
        used_at = previous.used_at if previous is not None else now
        self._entries[key] = _Entry(value, now, now, used_at, size)
        self._by_store.setdefault(key[0], set()).add(key[1])
        self._bytes += size
        while self._bytes > self._max_bytes and self._entries:
            self._drop(next(iter(self._entries)))
            CACHE_EVICTIONS.inc()
        CACHE_BYTES.set(self._bytes)
        return previous.value if previous is not None else None

    def _drop(self, key: CacheKey) -> _Entry | None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            refs = self._by_store.get(key[0], set())
            refs.discard(key[1])
            if not refs:
                self._by_store.pop(key[0], None)
            self._bytes -= entry.size
            CACHE_BYTES.set(self._bytes)
        return entry

    def _enqueue(
        self,
        store_key: str,
        template: _PendingBatch,
        ref: RemoteRef,
        requested_by: str,
        linger: float,
        max_age: float = 0.0,
    ) -> asyncio.Future[Result]:
        """Adds `ref` to the store's next batch of its kind; a ref already awaited (a probe
        that found it changed) keeps its future. Probes are never split: one answers all."""
        loop = asyncio.get_running_loop()
        future = self._inflight.get((store_key, ref))
        if future is None:
            future = loop.create_future()
            self._inflight[(store_key, ref)] = future
        slot = (store_key, template.probe)
        batch = self._pending.get(slot)
        full = batch is not None and not batch.probe and len(batch.refs) >= MAX_BATCH
        if batch is None or batch.client is not template.client or full:
            batch = replace(
                template, refs=[], requested_by=set(template.requested_by), max_ages={}, flushed=False
            )
            self._pending[slot] = batch
            loop.call_later(linger, self._flush, store_key, batch)
        batch.refs.append(ref)
        batch.max_ages[ref] = min(max_age, batch.max_ages.get(ref, max_age))
        if requested_by:
            batch.requested_by.add(requested_by)
        return future

    def _flush(self, store_key: str, batch: _PendingBatch) -> None:
        if batch.flushed:
            return
        if batch.probe and store_key in self._probing:
            return  # flushed when the store's probe in flight ends, which may answer it
        batch.flushed = True
        if self._pending.get((store_key, batch.probe)) is batch:
            del self._pending[(store_key, batch.probe)]
        if batch.probe:
            self._probing.add(store_key)
        work = self._probe(store_key, batch) if batch.probe else self._read(store_key, batch)
        task = asyncio.get_running_loop().create_task(work)
        self._reads.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._reads.discard)

    def _probe_done(self, store_key: str) -> None:
        self._probing.discard(store_key)
        waiting = self._pending.get((store_key, True))
        if waiting is not None:
            self._flush(store_key, waiting)

    async def _probe(self, store_key: str, batch: _PendingBatch) -> None:
        """Asks the store which held values are still current; reads the others."""
        try:
            await self._check(store_key, batch)
        finally:
            self._probe_done(store_key)

    async def _check(self, store_key: str, batch: _PendingBatch) -> None:
        now = self._clock()
        due: dict[RemoteRef, None] = {}
        for ref in dict.fromkeys(batch.refs):
            entry = self._entries.get((store_key, ref))
            future = self._inflight.get((store_key, ref))
            if entry is not None and future is not None and now - entry.checked_at <= batch.max_ages[ref]:
                del self._inflight[(store_key, ref)]  # confirmed by the probe this one waited for
                if not future.done():
                    future.set_result(entry.value)
            else:
                due[ref] = None
        if not due:
            return
        known = [r for r in self._by_store.get(store_key, set()) if r not in due]
        PROVIDER_CALLS.labels(provider=batch.provider, operation="probe").inc(len(due))
        asked = self._clock()  # what the answer confirms is current as of now, not its arrival
        try:
            stamps = await batch.client.stamps(list(due), known) or {}
        except Exception:  # a failed probe is a reason to read, and the read reports the error
            stamps = {}
        now = self._clock()
        reads: list[RemoteRef] = []
        changed: list[RemoteRef] = []
        for ref in [*due, *known]:
            entry = self._entries.get((store_key, ref))
            stamp = stamps.get(ref)
            current = entry is not None and bool(stamp) and stamp == entry.value.stamp
            if entry is not None and current:
                entry.checked_at = max(entry.checked_at, asked)
            if ref in due:
                future = self._inflight.get((store_key, ref))
                if entry is not None and current and future is not None:
                    del self._inflight[(store_key, ref)]
                    if not future.done():
                        future.set_result(entry.value)
                else:
                    reads.append(ref)  # new, changed, gone or not answered: read it
            elif (store_key, ref) in self._inflight:
                continue  # being read, or waiting for the next probe (which this one answered)
            elif stamp and not current:
                # Changed although nobody asked yet: the held value goes and its users refresh
                # now, sharing one read; a key no ExternalSecret uses any more is not read.
                self._drop((store_key, ref))
                changed.append(ref)
                if len(self._changed) >= CHANGED_REMEMBERED:
                    self._changed.clear()  # keys nobody asked for again; a bound, not a loss
                self._changed.add((store_key, ref))
            elif current and entry is not None and now - entry.fetched_at >= self._value_max_age * AGE_GATHER:
                reads.append(ref)  # due for its safety-net read soon: read with the others
        template = _PendingBatch(batch.client, batch.provider, batch.context, probe=False)
        template.requested_by |= batch.requested_by
        for ref in reads:
            self._enqueue(store_key, template, ref, "", BATCH_LINGER_SECONDS)
        for ref in changed:
            for listener in self._listeners:
                listener(store_key, ref)

    async def _read(self, store_key: str, batch: _PendingBatch) -> None:
        PROVIDER_CALLS.labels(provider=batch.provider, operation="read").inc(len(batch.refs))
        if batch.context is not None:
            audit.provider_read(batch.context, batch.provider, batch.refs, sorted(batch.requested_by))
        try:
            fetched: Mapping[RemoteRef, Result] = await batch.client.get_secrets(batch.refs)
        except VaultsyncError as exc:
            fetched = dict.fromkeys(batch.refs, exc)
        except Exception as exc:  # a provider bug must not hang every waiter
            error = ProviderError(f"provider {batch.provider!r} failed: {type(exc).__name__}")
            fetched = dict.fromkeys(batch.refs, error)
            del exc
        PROVIDER_THROTTLED.labels(provider=batch.provider).inc(
            sum(isinstance(r, ThrottledError) for r in fetched.values())
        )
        now = self._clock()
        for ref in batch.refs:
            key = (store_key, ref)
            result = fetched.get(ref) or ProviderError(f"provider returned no result for key {ref.key!r}")
            if isinstance(result, RemoteValue) and len(result.value) > MAX_VALUE_BYTES:
                result = _too_large(ref, len(result.value))
            if isinstance(result, RemoteValue):
                previous = self._keep(key, result, now)
                if previous is not None and _differs(previous, result):
                    for listener in self._listeners:
                        listener(store_key, ref)
            future = self._inflight.pop(key, None)
            if future is not None and not future.done():
                future.set_result(result)


def _gather(max_age: float) -> float:
    """How long a refresh of a held value may wait for others of its store."""
    return max(BATCH_LINGER_SECONDS, min(GATHER_MAX_SECONDS, max_age * GATHER_FRACTION))


def _too_large(ref: RemoteRef, size: int) -> SecretTooLarge:
    return SecretTooLarge(
        f"the value of remote key {ref.key!r} is {size} bytes, over the {MAX_VALUE_BYTES} byte "
        "limit of a Kubernetes Secret; it is neither used nor kept"
    )


def _differs(old: RemoteValue, new: RemoteValue) -> bool:
    return old.version != new.version or not hmac.compare_digest(old.value, new.value)
