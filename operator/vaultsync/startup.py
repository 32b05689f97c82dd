"""kopf's start and stop: tune kopf, build the services, hand them to kopf's memo, stop them.

The registrations only; what they call lives in `tuning` (kopf's settings),
`wiring` (the services and their order) and `housekeeping`.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from vaultsync import wiring
from vaultsync.config import Config
from vaultsync.kopfboundary import translated
from vaultsync.leader import Leadership
from vaultsync.registry import REGISTRY
from vaultsync.tuning import tune

log = logging.getLogger(__name__)


@kopf.on.startup(registry=REGISTRY)
@translated
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config: Config = memo.config
    tune(settings)
    leadership: Leadership | None = memo.leadership
    services = await wiring.wire(config, leadership)
    memo.services = services
    if leadership is not None:
        leadership.on_lost(lambda: wiring.halt(services))
    log.info("vaultsync started", extra={"operatorNamespace": config.operator_namespace})


@kopf.on.cleanup(registry=REGISTRY)
@translated
async def stop(memo: kopf.Memo, **_: Any) -> None:
    await wiring.close(memo.services)
    if memo.leadership is not None:
        # Every writer has stopped: hand the Lease over now, not once kopf's watches
        # have wound down (seconds later).
        await memo.leadership.release()
