"""The running services, as one object: what `wiring` builds and the handlers call.

Its own module so the handlers depend on the services' types, not on the module that
constructs them (and so on neither the Config nor construction order).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from vaultsync.clustersecrets import ClusterSecrets
from vaultsync.kube import Kube
from vaultsync.reconcile import Reconciler
from vaultsync.relist import Listings
from vaultsync.renderer import TemplateRenderer
from vaultsync.rollout import Rollouts
from vaultsync.scheduler import Scheduler
from vaultsync.stores import Stores
from vaultsync.unmanaged import Unmanaged


@dataclass
class Services:
    kube: Kube
    stores: Stores
    scheduler: Scheduler
    rollouts: Rollouts
    renderer: TemplateRenderer
    reconciler: Reconciler
    listings: dict[str, Listings]
    unmanaged: Unmanaged
    housekeeping: asyncio.Task[Any]
    cluster_secrets: ClusterSecrets
