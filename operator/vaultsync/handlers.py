"""Every kopf registration. Thin: hand the event to the service that owns it.

Only `on.event` handlers: they need no finalizers and write no bookkeeping
annotations, and the scheduler, not kopf, decides when to reconcile. They are
`async` so they run on the event loop that owns the scheduler (a sync handler
would run in kopf's thread pool). Each calls the services `wiring` built
(`memo.services`, a `services.Services`) and goes through `kopfboundary.translated`,
so kopf sees its own errors and vaultsync's modules never see kopf's.
"""

from __future__ import annotations

from typing import Any

import kopf

from vaultsync import constants as c
from vaultsync.errors import KubeNotFound
from vaultsync.kopfboundary import translated
from vaultsync.kube import connection_info
from vaultsync.registry import REGISTRY
from vaultsync.services import Services
from vaultsync.storestatus import update_store_status


@kopf.on.login(registry=REGISTRY)
def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
    """kopf's watches log in exactly as the operator's own requests do."""
    return connection_info(settings)


def _deleted(event: kopf.RawEvent) -> bool:
    return bool(event["type"] == "DELETED")


def _services(memo: kopf.Memo) -> Services:
    services: Services = memo.services
    return services


def _listed(kind: str, event: kopf.RawEvent, services: Services) -> None:
    """Every event of `kind` feeds its listings tracker (relist.py): after a re-list, what the
    list lacked is dropped."""
    if not _deleted(event):
        meta = event["object"]["metadata"]
        services.listings[kind].observe((meta.get("namespace"), meta["name"]), listed=event["type"] is None)


@kopf.on.event(c.GROUP, c.VERSION, c.EXTERNAL_SECRETS, registry=REGISTRY)
@translated
async def external_secret(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    services = _services(memo)
    services.scheduler.observe(event["object"], deleted=_deleted(event))
    _listed(c.KIND_EXTERNAL_SECRET, event, services)
    if _deleted(event):
        await services.reconciler.released(event["object"])


@kopf.on.event("v1", "secrets", labels={c.LABEL_MANAGED_BY: c.MANAGED_BY_VALUE}, registry=REGISTRY)
@translated
async def managed_secret(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    services = _services(memo)
    services.scheduler.secret_changed(event["object"], deleted=_deleted(event))
    # Listed (at start, or after a gap): resume an unfinished restart, only from a Secret whose
    # data and marks are as vaultsync wrote them (a tenant cannot forge a rotation).
    if event["type"] is None and services.scheduler.written_by_us(event["object"]):
        services.rollouts.resume(event["object"])


async def _store(kind: str, event: kopf.RawEvent, memo: kopf.Memo) -> None:
    services = _services(memo)
    body: dict[str, Any] = dict(event["object"])
    services.stores.observe(kind, body, deleted=_deleted(event))
    _listed(kind, event, services)
    if _deleted(event):
        return
    status = body.get("status") or {}
    if status.get("observedGeneration") == body["metadata"].get("generation"):
        return
    try:
        await update_store_status(services.kube, services.stores, kind, body)
    except KubeNotFound:
        return


@kopf.on.event(c.GROUP, c.VERSION, c.SECRET_STORES, registry=REGISTRY)
@translated
async def secret_store(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    await _store(c.KIND_SECRET_STORE, event, memo)


@kopf.on.event(c.GROUP, c.VERSION, c.CLUSTER_SECRET_STORES, registry=REGISTRY)
@translated
async def cluster_secret_store(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    await _store(c.KIND_CLUSTER_SECRET_STORE, event, memo)
