"""Which Events the operator posts, and how many: the Event policy, apart from the transport.

Events are best effort, as with client-go's EventRecorder: a budget shared by every
Event of the operator (`--event-burst`, then `--events-per-second`) keeps a start on
ten thousand ExternalSecrets from posting ten thousand Events, and one the API server
refuses (a namespace being deleted answers 403, an API server under load 5xx) is
logged and counted, never raised, so no sync or restart fails for want of its Event.
"""

from __future__ import annotations

import logging
from typing import Protocol

from vaultsync.budget import EVENT_BURST, EVENTS_PER_SECOND, TokenBucket
from vaultsync.conditions import micro_time
from vaultsync.errors import VaultsyncError
from vaultsync.kube import Body, Kube, ObjectRef
from vaultsync.metrics import EVENTS_DROPPED

log = logging.getLogger(__name__)
MESSAGE_LIMIT = 1024


class EventSink(Protocol):
    """What posts Events: the recorder, or a test's stand-in."""

    async def post_event(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None: ...


class EventRecorder:
    def __init__(self, kube: Kube, budget: TokenBucket | None = None) -> None:
        self._kube = kube
        self._budget = budget or TokenBucket(rate=EVENTS_PER_SECOND, burst=EVENT_BURST)

    async def post_event(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None:
        """Posts an Event if the budget allows; otherwise counts it as dropped."""
        if not self._budget.take():
            EVENTS_DROPPED.labels(type=type_).inc()
            return
        namespace = ref.namespace or "default"
        try:
            await self._kube.create_event(namespace, event_body(ref, type_, reason, message))
        except VaultsyncError as exc:
            EVENTS_DROPPED.labels(type=type_).inc()
            log.warning(
                "posting an event failed",
                extra={"object": f"{namespace}/{ref.name}", "reason": reason, "detail": exc.message},
            )


def event_body(ref: ObjectRef, type_: str, reason: str, message: str) -> Body:
    now = micro_time()
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{ref.name}.", "namespace": ref.namespace or "default"},
        "involvedObject": {
            "apiVersion": ref.api_version,
            "kind": ref.kind,
            "name": ref.name,
            "namespace": ref.namespace,
            "uid": ref.uid,
        },
        "type": type_,
        "reason": reason,
        "message": message[:MESSAGE_LIMIT],
        "firstTimestamp": now[:19] + "Z",
        "lastTimestamp": now[:19] + "Z",
        "eventTime": now,
        "count": 1,
        "source": {"component": "vaultsync"},
        "reportingComponent": "vaultsync.io/operator",
        "reportingInstance": "vaultsync",
        "action": reason,
    }
