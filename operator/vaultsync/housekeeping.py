"""What runs every minute besides the syncs: store retries, cache pruning, the HMAC key.

Stores that are not ready are retried, so fixing a credential Secret heals them;
cached values nobody refreshed for hours are dropped, so memory follows what is in
use; a deleted HMAC key Secret is put back with the key in use, so no fingerprint
changes. Housekeeping never waits on one store: each check ends at its own deadline.
"""

from __future__ import annotations

import asyncio
import logging

from vaultsync.cache import FetchCache
from vaultsync.errors import VaultsyncError
from vaultsync.hmackey import keep_hmac_key
from vaultsync.kube import Kube
from vaultsync.stores import Stores
from vaultsync.storestatus import update_store_status

log = logging.getLogger(__name__)

STORE_RECHECK_SECONDS = 60.0
CACHE_RETENTION_SECONDS = 6 * 3600.0


async def housekeeping(kube: Kube, stores: Stores, cache: FetchCache, namespace: str, key: bytes) -> None:
    while True:
        await asyncio.sleep(STORE_RECHECK_SECONDS)
        try:
            await keep_hmac_key(kube, namespace, key)
        except VaultsyncError as exc:
            log.warning("HMAC key Secret not checked", extra={"detail": exc.message})
        # All at once: each store's check ends at its own deadline, none waits for another.
        await asyncio.gather(
            *(update_store_status(kube, stores, kind, body) for kind, body in stores.not_ready())
        )
        cache.prune(CACHE_RETENTION_SECONDS)
