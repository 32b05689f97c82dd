"""Wiring: kopf settings, the shared clients in `memo`, and an orderly shutdown.

Settings are chosen on purpose:
- kopf posts no Events of its own (ours say what happened to the Secret);
- every Secret and ConfigMap is watched (restarts for objects vaultsync does
  not manage, unmanaged.py), but only a keyed digest of those some opted-in
  workload references is kept, never a value;
- the initial listing comes in pages of 500, and kopf's per-object workers exit
  0.1 s after their last event, which keeps the memory peak low;
- only `on.event` handlers are used, so kopf never writes its bookkeeping
  annotations or finalizers onto Secrets, workloads or ExternalSecrets.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable
from typing import Any

import kopf

from vaultsync import constants as c
from vaultsync.budget import TokenBucket
from vaultsync.cache import FetchCache
from vaultsync.config import Config
from vaultsync.errors import VaultsyncError
from vaultsync.kube import Kube
from vaultsync.leader import Leadership
from vaultsync.reconcile import Reconciler
from vaultsync.registry import REGISTRY
from vaultsync.relist import Listings
from vaultsync.renderer import TemplateRenderer
from vaultsync.rollout import Rollouts
from vaultsync.sandbox import Limits
from vaultsync.scheduler import Scheduler
from vaultsync.stores import PLURALS, Stores, store_status
from vaultsync.unmanaged import Unmanaged

log = logging.getLogger(__name__)

STORE_RECHECK_SECONDS = 60.0
CACHE_RETENTION_SECONDS = 6 * 3600.0


class _NoDiffBase(kopf.DiffBaseStorage):
    """kopf deep-copies every event's body to diff it for change handlers; we have none.

    With only `on.event` handlers the diff is never used, and skipping it saves a deep
    copy per watch event (about a third of kopf's CPU at ten thousand objects).
    """

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[kopf.FieldSpec] | None = None
    ) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


@kopf.on.startup(registry=REGISTRY)
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config: Config = memo.config
    settings.posting.enabled = False
    settings.persistence.finalizer = f"{c.GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.KOPF_PERSISTENCE_PREFIX)
    settings.persistence.diffbase_storage = _NoDiffBase()
    settings.watching.server_timeout = 300
    # The initial list in pages, not one response with every object decoded at once:
    # the peak of that decode stays in the process as fragmented memory.
    settings.watching.chunk_size = 500
    settings.networking.request_timeout = 60
    # kopf keeps a worker (task, queue, last body) per object for `idle_timeout` after its
    # last event; its default of 5 s holds one for every object during the initial listing,
    # and that peak stays as fragmented memory: 161 -> 91 MiB RSS at 3,000 ExternalSecrets
    # with 0.1 s. Our handlers only hand the event over, so a worker has nothing to wait for.
    settings.queueing.idle_timeout = 0.1

    leadership: Leadership | None = memo.leadership
    kube = Kube(
        event_budget=TokenBucket(config.events_per_second, config.event_burst),
        may_write=None if leadership is None else leadership.held,
    )
    hmac_key = await kube.ensure_hmac_key(config.operator_namespace)
    operator_account = (config.operator_namespace, config.service_account) if config.service_account else None
    stores = Stores(
        kube,
        operator_account,
        config.deny_egress_cidrs,
        enable_fake_provider=config.enable_fake_provider,
    )
    cache = FetchCache(max_bytes=config.cache_max_bytes)
    rollouts = Rollouts(
        kube, hmac_key, config.restart_window, config.restarts_per_minute, quiet=config.restart_quiet
    )
    renderer = TemplateRenderer(
        Limits(config.template_cpu_seconds, config.template_memory_mib, config.template_output_bytes),
        config.template_workers,
    )
    reconciler = Reconciler(
        kube,
        stores,
        cache,
        hmac_key,
        renderer,
        on_rotated=rollouts.secret_rotated,
        sync_timeout=config.sync_timeout,
    )
    scheduler = Scheduler(
        reconciler,
        hmac_key,
        workers=config.workers,
        first_sync_max_age=config.first_sync_max_age,
        min_refresh=config.min_refresh_interval,
        store_concurrency=config.store_concurrency,
    )
    cache.add_change_listener(scheduler.remote_changed)
    scheduler.start()
    memo.kube, memo.stores, memo.scheduler, memo.rollouts = kube, stores, scheduler, rollouts
    memo.unmanaged = Unmanaged(kube, rollouts, hmac_key)
    memo.renderer = renderer
    memo.listings = {
        c.KIND_EXTERNAL_SECRET: Listings(c.RELIST_QUIET_SECONDS, scheduler.relisted),
        **{
            kind: Listings(c.RELIST_QUIET_SECONDS, functools.partial(stores.relisted, kind))
            for kind in (c.KIND_SECRET_STORE, c.KIND_CLUSTER_SECRET_STORE)
        },
    }
    memo.reconciler = reconciler
    memo.housekeeping = asyncio.create_task(
        _housekeeping(kube, stores, cache, config.operator_namespace, hmac_key)
    )
    if leadership is not None:
        leadership.on_lost(lambda: _halt(memo))
    log.info("vaultsync started", extra={"operatorNamespace": config.operator_namespace})


def _halt(memo: kopf.Memo) -> None:
    """Leadership lost: stop every service that writes or calls providers, now (cli stops kopf)."""
    memo.housekeeping.cancel()
    memo.scheduler.halt()
    memo.rollouts.halt()


async def _housekeeping(kube: Kube, stores: Stores, cache: FetchCache, namespace: str, key: bytes) -> None:
    """Stores that are not ready are retried, so fixing a credential Secret heals them;
    cached values nobody refreshed for hours are dropped, so memory follows what is in use;
    a deleted HMAC key Secret is put back with the key in use, so no fingerprint changes."""
    while True:
        await asyncio.sleep(STORE_RECHECK_SECONDS)
        try:
            await kube.keep_hmac_key(namespace, key)
        except VaultsyncError as exc:
            log.warning("HMAC key Secret not checked", extra={"detail": exc.message})
        # All at once: each store's check ends at its own deadline, none waits for another.
        await asyncio.gather(
            *(update_store_status(kube, stores, kind, body) for kind, body in stores.not_ready())
        )
        cache.prune(CACHE_RETENTION_SECONDS)


async def update_store_status(kube: Kube, stores: Stores, kind: str, body: dict[str, Any]) -> None:
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


@kopf.on.cleanup(registry=REGISTRY)
async def stop(memo: kopf.Memo, **_: Any) -> None:
    memo.housekeeping.cancel()
    for listings in memo.listings.values():
        await listings.stop()
    await memo.scheduler.stop()  # first, so no new rotation reaches the rollouts
    await memo.unmanaged.stop()
    await memo.rollouts.stop()
    await memo.renderer.close()
    await memo.stores.close()
    await memo.kube.close()
    if memo.leadership is not None:
        # Every writer has stopped: hand the Lease over now, not once kopf's watches
        # have wound down (seconds later).
        await memo.leadership.release()
