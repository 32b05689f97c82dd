"""A store's own status: checked with a real round trip to its vault, and written.

Written when the watch delivers a new generation of a store and by housekeeping for
stores that are not Ready yet (so fixing a credential Secret heals them). Each check
is bounded, so neither the store's watch nor housekeeping waits on a hanging vault.
Its own module because two callers need it (the handlers and housekeeping) and
neither should reach into the other, nor into the wiring, for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from vaultsync import constants as c
from vaultsync.conditions import ready
from vaultsync.errors import AuthenticationError, StoreNotReady, VaultsyncError
from vaultsync.kube import Kube
from vaultsync.storeclients import ResolvedStore
from vaultsync.storemirror import PLURALS

log = logging.getLogger(__name__)


class StoreClientSource(Protocol):
    async def client_for(self, kind: str, body: Mapping[str, Any]) -> ResolvedStore: ...

    async def invalidate(self, resolved: ResolvedStore) -> None: ...


async def store_status(
    stores: StoreClientSource,
    kind: str,
    body: Mapping[str, Any],
    timeout: float = c.STORE_STATUS_TIMEOUT_SECONDS,
) -> dict[str, Any]:
    """The store's status: `Ready` after a real round trip to its vault within `timeout`, else
    why not."""
    try:
        async with asyncio.timeout(timeout):
            resolved = await stores.client_for(kind, body)
            try:
                await resolved.client.validate()
            except AuthenticationError:
                await stores.invalidate(resolved)
                raise
        ok, reason, message = True, c.Reason.VALID, f"{resolved.context} is ready"
    except TimeoutError:
        meta = body["metadata"]
        where = f"{meta['namespace']}/" if meta.get("namespace") else ""
        ok, reason = False, c.Reason.PROVIDER_ERROR
        message = f"{kind} {where}{meta['name']} did not answer within {timeout:g} s"
    except StoreNotReady as exc:
        ok, reason, message = False, c.Reason.INVALID_CONFIG, exc.message
    except AuthenticationError as exc:
        ok, reason, message = False, c.Reason.INVALID_CONFIG, f"credentials refused: {exc.message}"
    except VaultsyncError as exc:
        ok, reason, message = False, c.Reason.PROVIDER_ERROR, exc.message
    except Exception as exc:  # the same guard as in client creation, for validate()
        ok, reason, message = False, c.Reason.PROVIDER_ERROR, f"validation failed ({type(exc).__name__})"
    provider = ",".join(sorted((body.get("spec") or {}).get("provider") or {}))
    return {
        "observedGeneration": body["metadata"].get("generation"),
        "provider": provider,
        "conditions": [ready(body.get("status"), ok, reason.value, message)],
    }


async def update_store_status(kube: Kube, stores: StoreClientSource, kind: str, body: dict[str, Any]) -> None:
    """Checks the store and writes its status if it changed; a refused write is logged."""
    status = await store_status(stores, kind, body)
    old = body.get("status") or {}
    if status == {k: old.get(k) for k in status}:
        return
    meta = body["metadata"]
    try:
        await kube.patch_status(PLURALS[kind], meta.get("namespace"), meta["name"], status)
    except VaultsyncError as exc:
        log.warning("store status not written", extra={"store": meta["name"], "detail": exc.message})
        return
    body["status"] = status
