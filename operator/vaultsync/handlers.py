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
from vaultsync.kube import WORKLOAD_KINDS, connection_info
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
    services.cluster_secrets.external_secret_changed(event["object"], deleted=_deleted(event))
    _listed(c.KIND_EXTERNAL_SECRET, event, services)
    if _deleted(event):
        await services.reconciler.released(event["object"])


@kopf.on.event("v1", "secrets", labels={c.LABEL_MANAGED_BY: c.MANAGED_BY_VALUE}, registry=REGISTRY)
@translated
async def managed_secret(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    services = _services(memo)
    services.scheduler.secret_changed(event["object"], deleted=_deleted(event))
    services.scheduler.template_source_changed("Secret", event["object"], listed=event["type"] is None)
    # A managed Secret some workload also names directly: a digest, no read.
    services.unmanaged.object_changed("Secret", event["object"], deleted=_deleted(event))
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


@kopf.on.event(c.GROUP, c.VERSION, c.CLUSTER_EXTERNAL_SECRETS, registry=REGISTRY)
@translated
async def cluster_external_secret(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _services(memo).cluster_secrets.observe(event["object"], deleted=_deleted(event))


@kopf.on.event("v1", "namespaces", registry=REGISTRY)
@translated
async def namespace(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """Namespaces appearing, relabelled or going: the ClusterExternalSecrets follow them."""
    _services(memo).cluster_secrets.namespace_changed(event["object"], deleted=_deleted(event))


# Restarts for ConfigMaps and Secrets vaultsync does not manage (unmanaged.py): the workloads
# say which objects matter, the objects' events say when they changed.


def _unmanaged_secret(labels: kopf.Labels, **_: Any) -> bool:
    return bool(labels.get(c.LABEL_MANAGED_BY) != c.MANAGED_BY_VALUE)


@kopf.on.event("v1", "secrets", when=_unmanaged_secret, registry=REGISTRY)
@translated
async def unmanaged_secret(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _services(memo).unmanaged.object_changed("Secret", event["object"], deleted=_deleted(event))
    _services(memo).scheduler.template_source_changed("Secret", event["object"], listed=event["type"] is None)


@kopf.on.event("v1", "configmaps", registry=REGISTRY)
@translated
async def configmap(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _services(memo).unmanaged.object_changed("ConfigMap", event["object"], deleted=_deleted(event))
    # A template kept in it (templateFrom) renders again: scheduler.template_source_changed.
    _services(memo).scheduler.template_source_changed(
        "ConfigMap", event["object"], listed=event["type"] is None
    )


def _workload(kind: str) -> Any:
    async def handler(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        listed = event["type"] is None  # the initial listing, not a change while running
        unmanaged = _services(memo).unmanaged
        unmanaged.workload_changed(kind, event["object"], deleted=_deleted(event), listed=listed)

    return handler


for _kind, (_api_version, _plural) in WORKLOAD_KINDS.items():
    _group, _, _version = _api_version.rpartition("/")
    kopf.on.event(_group, _version, _plural, registry=REGISTRY, id=f"workload-{_plural}")(_workload(_kind))
