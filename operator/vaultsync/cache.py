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

Every value served, from the cache or a shared read, is audited with who asked.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from vaultsync import audit
from vaultsync.constants import SECRET_SIZE_LIMIT
from vaultsync.errors import ProviderError, SecretTooLarge, ThrottledError, VaultsyncError
from vaultsync.metrics import CACHE_BYTES, CACHE_EVICTIONS, CACHE_LOOKUPS, PROVIDER_CALLS, PROVIDER_THROTTLED
from vaultsync.providers.base import RemoteRef, RemoteValue, SecretsClient, StoreContext

CacheKey = tuple[str, RemoteRef]
Result = RemoteValue | VaultsyncError
ChangeListener = Callable[[str, RemoteRef], None]

BATCH_LINGER_SECONDS = 0.005
# No single value can fit in a Secret beyond this, so none is worth holding.
MAX_VALUE_BYTES = SECRET_SIZE_LIMIT
MAX_BATCH = 100
CACHE_MAX_BYTES = 128 * 1024 * 1024
# What one entry costs besides its value: key strings, the entry, the dict slot.
ENTRY_OVERHEAD_BYTES = 256


@dataclass
class _Entry:
    value: RemoteValue
    fetched_at: float
    size: int


@dataclass
class _PendingBatch:
    client: SecretsClient
    provider: str
    context: StoreContext | None
    refs: list[RemoteRef] = field(default_factory=list)
    requested_by: set[str] = field(default_factory=set)


class FetchCache:
    """Shared by every reconcile; keyed by store identity and remote ref."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_bytes: int = CACHE_MAX_BYTES) -> None:
        self._clock = clock
        self._max_bytes = max_bytes
        self._bytes = 0
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()  # least recently used first
        self._inflight: dict[CacheKey, asyncio.Future[Result]] = {}
        self._pending: dict[str, _PendingBatch] = {}
        self._listeners: list[ChangeListener] = []
        self._reads: set[asyncio.Task[None]] = set()

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
        served: dict[str, list[RemoteRef]] = {"hit": [], "shared": []}
        for ref in dict.fromkeys(refs):
            key = (store_key, ref)
            entry = self._entries.get(key)
            if entry is not None and max_age > 0 and now - entry.fetched_at <= max_age:
                CACHE_LOOKUPS.labels(result="hit").inc()
                self._entries.move_to_end(key)
                results[ref] = entry.value
                served["hit"].append(ref)
            elif key in self._inflight:
                CACHE_LOOKUPS.labels(result="shared").inc()
                waiting[ref] = self._inflight[key]
                served["shared"].append(ref)
            else:
                CACHE_LOOKUPS.labels(result="miss").inc()
                waiting[ref] = self._enqueue(store_key, provider, client, ref, context, requested_by)
        if context is not None:
            for source, served_refs in served.items():
                if served_refs:
                    audit.cache_read(context, provider, served_refs, requested_by, source)
        for ref, future in waiting.items():
            results[ref] = await asyncio.shield(future)
        return results

    @property
    def size(self) -> int:
        """Bytes the kept values are counted as (values plus a fixed overhead per entry)."""
        return self._bytes

    def prune(self, older_than: float) -> int:
        """Drops entries fetched more than `older_than` seconds ago; returns how many."""
        limit = self._clock() - older_than
        stale = [k for k, e in self._entries.items() if e.fetched_at < limit]
        for key in stale:
            self._drop(key)
        return len(stale)

    def _keep(self, key: CacheKey, value: RemoteValue, now: float) -> RemoteValue | None:
        """Stores `value`, evicting the least recently used beyond the cap; the previous value."""
        previous = self._drop(key)
        size = len(value.value) + len(key[0]) + len(key[1].key) + len(key[1].version) + ENTRY_OVERHEAD_BYTES
        self._entries[key] = _Entry(value, now, size)
        self._bytes += size
        while self._bytes > self._max_bytes and self._entries:
            self._drop(next(iter(self._entries)))
            CACHE_EVICTIONS.inc()
        CACHE_BYTES.set(self._bytes)
        return previous.value if previous is not None else None

    def _drop(self, key: CacheKey) -> _Entry | None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry.size
            CACHE_BYTES.set(self._bytes)
        return entry

    def _enqueue(
        self,
        store_key: str,
        provider: str,
        client: SecretsClient,
        ref: RemoteRef,
        context: StoreContext | None,
        requested_by: str,
    ) -> asyncio.Future[Result]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._inflight[(store_key, ref)] = future
        batch = self._pending.get(store_key)
        if batch is None or batch.client is not client or len(batch.refs) >= MAX_BATCH:
            batch = _PendingBatch(client=client, provider=provider, context=context)
            self._pending[store_key] = batch
            loop.call_later(BATCH_LINGER_SECONDS, self._flush, store_key, batch)
        batch.refs.append(ref)
        if requested_by:
            batch.requested_by.add(requested_by)
        return future

    def _flush(self, store_key: str, batch: _PendingBatch) -> None:
        if self._pending.get(store_key) is batch:
            del self._pending[store_key]
        task = asyncio.get_running_loop().create_task(self._read(store_key, batch))
        self._reads.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._reads.discard)

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


def _too_large(ref: RemoteRef, size: int) -> SecretTooLarge:
    return SecretTooLarge(
        f"the value of remote key {ref.key!r} is {size} bytes, over the {MAX_VALUE_BYTES} byte "
        "limit of a Kubernetes Secret; it is neither used nor kept"
    )


def _differs(old: RemoteValue, new: RemoteValue) -> bool:
    return old.version != new.version or not hmac.compare_digest(old.value, new.value)
