"""Forcing syncs and waiting for their outcome; shared by `sync` and `respond`.

A sync is forced the way the operator documents it (docs/api.md): a new value of the
`vaultsync.io/force-sync` annotation, which the operator acts on once and records in
`status.forceSyncHandled`. Waiting for that record, then reading the `Ready` condition,
tells exactly whether this very request succeeded, not an older sync.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from vaultsync import constants as c
from vaultsync.commands import common
from vaultsync.commands.client import UserKube
from vaultsync.errors import KubeNotFound, VaultsyncError

POLL_SECONDS = 1.0


@dataclass
class Outcome:
    namespace: str
    name: str
    reason: str = "Timeout"
    message: str = (
        "the operator did not act on the request in time (is it running and watching this namespace?)"
    )

    @property
    def ok(self) -> bool:
        return self.reason == c.Reason.SYNCED.value

    def row(self) -> common.Row:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "result": self.reason,
            "message": self.message,
        }


def new_token(prefix: str = "") -> str:
    return f"{prefix}cli-{time.time_ns()}"


async def force_and_wait(
    kube: UserKube, targets: list[tuple[str, str]], token: str, timeout: float
) -> list[Outcome]:
    """Annotates every (namespace, name) with `token`, then waits for each to have handled it."""
    outcomes = {key: Outcome(*key) for key in targets}
    for namespace, name in targets:
        try:
            await kube.annotate(c.EXTERNAL_SECRETS, namespace, name, {c.ANNOTATION_FORCE_SYNC: token})
        except KubeNotFound:
            outcomes[(namespace, name)].reason, outcomes[(namespace, name)].message = (
                "NotFound",
                "no such ExternalSecret",
            )
    waiting = {key for key, outcome in outcomes.items() if outcome.reason == "Timeout"}
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline:
        for key in sorted(waiting):
            try:
                body = await kube.read_custom(c.EXTERNAL_SECRETS, *key)
            except VaultsyncError:
                continue
            if (body.get("status") or {}).get("forceSyncHandled") != token:
                continue
            condition = common.ready_condition(body)
            outcomes[key].reason = str(condition.get("reason") or "Unknown")
            outcomes[key].message = str(condition.get("message") or "")
            waiting.discard(key)
        if waiting:
            await asyncio.sleep(POLL_SECONDS)
    return [outcomes[key] for key in targets]
