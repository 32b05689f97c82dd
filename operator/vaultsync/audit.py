"""The audit trail: who read which remote key, through which store, and why.

Platform teams ask "who read what": every provider read is logged as one
structured line under the `vaultsync.audit` logger (key names, versions,
store and requesting ExternalSecrets; never values), which a log pipeline can
ship apart from the operator's operational logs. A value served from the shared
cache (or from a read another ExternalSecret started) is a read too: without
its line, a tenant's access through a shared ClusterSecretStore would leave no
trace whenever someone else had read the key first.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

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
