"""The audit trail: who read which remote key, through which store, and why.

Platform teams ask "who read what": every provider read is logged as one
structured line under the `vaultsync.audit` logger (key names, versions,
store and requesting ExternalSecrets; never values), which a log pipeline can
ship apart from the operator's operational logs. A value served from the shared
cache (or from a read another ExternalSecret started) is a read too: without
its line, a tenant's access through a shared ClusterSecretStore would leave no
trace whenever someone else had read the key first.

A refresh served the same versions from the cache as last time is not logged again for an
hour (`CacheHitAudit`): each ExternalSecret's access to each version of each key through
each store is on record, and again every hour while it goes on, without one line per
refresh (ten thousand ExternalSecrets on a 60 s interval made that line an eighth of the
operator's CPU time in steady state, and 14 million lines a day of the same fact).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

from vaultsync.constants import CACHE_HIT_REPEAT_SECONDS, CACHE_HITS_REMEMBERED
from vaultsync.providers.base import RemoteRef, StoreContext

_log = logging.getLogger("vaultsync.audit")


def _keys(refs: Iterable[RemoteRef]) -> list[str]:
    return sorted(f"{r.key}@{r.version}" if r.version else r.key for r in refs)


def provider_read(
    store: StoreContext, provider: str, refs: Iterable[RemoteRef], requested_by: Sequence[str]
) -> None:
    keys = _keys(refs)
    _log.info(
        "provider read",
        extra={
            "audit": {
                "store": str(store),
                "provider": provider,
                "keys": keys,
                "requestedBy": list(requested_by),
            }
        },
    )


def cache_read(
    store: StoreContext, provider: str, refs: Iterable[RemoteRef], requested_by: str, source: str
) -> None:
    """`source`: "hit" (a cached value) or "shared" (joined a read already in flight)."""
    _log.info(
        "cache read",
        extra={
            "audit": {
                "store": str(store),
                "provider": provider,
                "keys": _keys(refs),
                "requestedBy": [requested_by],
                "source": source,
            }
        },
    )


class CacheHitAudit:
    """`cache_read` for values served from the cache, each fact at most once an hour.

    Remembers a hash of (store, provider, reader, keys and versions) and when it was logged,
    not the names themselves: a few megabytes at the largest, whatever the names' length.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._logged: dict[int, float] = {}

    def served(
        self, store: StoreContext, provider: str, served: Sequence[tuple[RemoteRef, str]], requested_by: str
    ) -> None:
        """`served`: each ref with the version of the value it was served."""
        fact = hash((str(store), provider, requested_by, tuple(served)))
        now = self._clock()
        logged = self._logged.get(fact)
        if logged is not None and now - logged < CACHE_HIT_REPEAT_SECONDS:
            return
        if len(self._logged) >= CACHE_HITS_REMEMBERED:
            self._logged.clear()
        self._logged[fact] = now
        cache_read(store, provider, [ref for ref, _ in served], requested_by, "hit")
