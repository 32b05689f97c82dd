"""Builds the operator's services from its Config and stops them in order.

The one place that knows which service needs which: construction order, shared
clients (one Kube, one HMAC key, one cache) and the order of shutdown. It knows
nothing of kopf: `startup.py` hands kopf's memo the services built here, and the
handlers call those services directly.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Hashable

from vaultsync import constants as c
from vaultsync.budget import TokenBucket
from vaultsync.cache import FetchCache
from vaultsync.callbudget import Budgets
from vaultsync.clustersecrets import ClusterSecrets
from vaultsync.config import Config
from vaultsync.events import EventRecorder
from vaultsync.hmackey import ensure_hmac_key
from vaultsync.housekeeping import housekeeping
from vaultsync.kube import Kube
from vaultsync.leader import Leadership
from vaultsync.reconcile import Reconciler
from vaultsync.relist import Listings
from vaultsync.renderer import TemplateRenderer
from vaultsync.rollout import Rollouts
from vaultsync.sandbox import Limits
from vaultsync.scheduler import Scheduler
from vaultsync.services import Services
from vaultsync.storeclients import StoreClients
from vaultsync.stores import Stores
from vaultsync.unmanaged import Unmanaged


async def wire(config: Config, leadership: Leadership | None) -> Services:
    """Every service, started; the HMAC key is made (or read) first, as fingerprints need it."""
    kube = Kube(may_write=None if leadership is None else leadership.held)
    events = EventRecorder(kube, TokenBucket(config.events_per_second, config.event_burst))
    hmac_key = await ensure_hmac_key(kube, config.operator_namespace)
    budgets = Budgets(config.store_calls_per_minute or None)
    operator_account = (config.operator_namespace, config.service_account) if config.service_account else None
    clients = StoreClients(
        kube,
        operator_account,
        config.deny_egress_cidrs,
        enable_fake_provider=config.enable_fake_provider,
        budgets=budgets,
    )
    stores = Stores(kube, clients)
    cache = FetchCache(max_bytes=config.cache_max_bytes, value_max_age=config.value_max_age)
    rollouts = Rollouts(
        kube,
        hmac_key,
        config.restart_window,
        config.restarts_per_minute,
        events=events,
        quiet=config.restart_quiet,
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
        events=events,
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
        budgets=budgets,
        on_stretch=_budget_warnings(events, stores, budgets),
    )
    cache.add_change_listener(scheduler.remote_changed)
    scheduler.start()
    cluster_secrets = ClusterSecrets(kube, None if config.clusterwide else frozenset(config.namespaces))

    async def external_secrets_relisted(seen: set[Hashable]) -> None:
        await scheduler.relisted(seen)
        await cluster_secrets.relisted(seen)

    listings: dict[str, Listings] = {
        c.KIND_EXTERNAL_SECRET: Listings(c.RELIST_QUIET_SECONDS, external_secrets_relisted),
        **{
            kind: Listings(c.RELIST_QUIET_SECONDS, functools.partial(stores.relisted, kind))
            for kind in (c.KIND_SECRET_STORE, c.KIND_CLUSTER_SECRET_STORE)
        },
    }
    task = asyncio.create_task(housekeeping(kube, stores, cache, config.operator_namespace, hmac_key))
    unmanaged = Unmanaged(kube, rollouts, hmac_key, events=events)
    cluster_secrets.start()
    return Services(
        kube,
        stores,
        scheduler,
        rollouts,
        renderer,
        reconciler,
        listings,
        unmanaged,
        task,
        cluster_secrets=cluster_secrets,
    )


def _budget_warnings(events: EventRecorder, stores: Stores, budgets: Budgets) -> Callable[[str, float], None]:
    """A Warning Event on a store whose call budget stretches its refreshes, at most once per
    BUDGET_WARNING_SECONDS per store."""
    last: dict[str, float] = {}
    posting: set[asyncio.Task[None]] = set()

    def warn(store: str, wait: float) -> None:
        now = time.monotonic()
        ref = stores.mirror.object_ref(store)
        budget = budgets.get(store)
        if (
            ref is None
            or budget is None
            or now - last.get(store, -c.BUDGET_WARNING_SECONDS) < c.BUDGET_WARNING_SECONDS
        ):
            return
        last[store] = now
        rate = f"{budget.rate:.0f}" if budget.rate is not None else "no"
        message = (
            f"refreshes are moved up to {wait:.0f}s later to stay within this store's call budget "
            f"({rate} calls per minute now); its ExternalSecrets cannot keep their refresh "
            "intervals: raise spec.callsPerMinute or --store-calls-per-minute, or lengthen refreshInterval"
        )
        task = asyncio.create_task(events.post_event(ref, "Warning", c.REASON_CALL_BUDGET, message))
        posting.add(task)
        task.add_done_callback(posting.discard)

    return warn


def halt(services: Services) -> None:
    """Leadership lost: stop every service that writes or calls providers, now (cli stops kopf)."""
    services.housekeeping.cancel()
    services.scheduler.halt()
    services.cluster_secrets.halt()
    services.rollouts.halt()


async def close(services: Services) -> None:
    services.housekeeping.cancel()
    for listings in services.listings.values():
        await listings.stop()
    await services.scheduler.stop()  # first, so no new rotation reaches the rollouts
    await services.cluster_secrets.stop()
    await services.unmanaged.stop()
    await services.rollouts.stop()
    await services.renderer.close()
    await services.stores.close()
    await services.kube.close()
