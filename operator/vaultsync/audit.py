"""The audit trail: who read which remote key, through which store, and why.

Platform teams ask "who read what": every provider read is logged as one
structured line under the `vaultsync.audit` logger (key names, versions,
store and requesting ExternalSecrets; never values), which a log pipeline can
ship apart from the operator's operational logs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from vaultsync.providers.base import RemoteRef, StoreContext

_log = logging.getLogger("vaultsync.audit")


def provider_read(
    store: StoreContext, provider: str, refs: Iterable[RemoteRef], requested_by: Sequence[str]
) -> None:
    keys = sorted(f"{r.key}@{r.version}" if r.version else r.key for r in refs)
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
