"""Rolling restarts of the workloads that opted in, when a Secret's data really changed.

The rules users of Reloader ask for, built in:
- restart only after the new Secret is written, and only on a real change of
  data (never on first sync, on opt-in, or on operator restart): the last
  fingerprint a workload was restarted for is kept on its own metadata, so a
  repeated notification is a no-op;
- coalesce: changes to several Secrets of a namespace within a window make one
  patch per workload, so one new ReplicaSet;
- restart = patch a pod-template annotation, so the workload's own strategy
  (maxUnavailable, partitions) governs the rollout;
- a paused Deployment is not patched; an Event says why, and the restart is
  retried until it is resumed;
- a cluster-wide cap on restarts per minute; the excess waits, it is not dropped;
- a stopping operator makes the restarts still waiting for their window at once,
  so an upgrade or eviction of the operator does not swallow a rotation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from vaultsync import constants as c
from vaultsync.errors import KubeConflict, KubeNotFound, VaultsyncError
from vaultsync.fingerprints import combined
from vaultsync.kube import Body, Kube, ObjectRef
from vaultsync.metrics import RESTARTS

log = logging.getLogger(__name__)

RECHECK_SECONDS = 10.0  # how often paused workloads and failed restarts are tried again
STOP_GRACE_SECONDS = 5.0  # within the 10 s a Pod gets between SIGTERM and SIGKILL by default
PATCH_ATTEMPTS = 3  # a workload's resourceVersion moves with every status update


@dataclass(frozen=True)
class Rotation:
    secret: str
    fingerprint: str
    external_secret: ObjectRef


def referenced_secrets(template: Mapping[str, Any]) -> set[str]:
    """Secrets a pod template reads: env, envFrom, volumes and projected volumes, init containers too."""
    spec = template.get("spec") or {}
    names: set[str] = set()
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        for env in container.get("env") or []:
            ref = (env.get("valueFrom") or {}).get("secretKeyRef") or {}
            if ref.get("name"):
                names.add(ref["name"])
        for source in container.get("envFrom") or []:
            ref = source.get("secretRef") or {}
            if ref.get("name"):
                names.add(ref["name"])
    for volume in spec.get("volumes") or []:
        secret = volume.get("secret") or {}
        if secret.get("secretName"):
            names.add(secret["secretName"])
        for source in (volume.get("projected") or {}).get("sources") or []:
            ref = source.get("secret") or {}
            if ref.get("name"):
                names.add(ref["name"])
    return names


def watched_secrets(workload: Mapping[str, Any]) -> set[str]:
    """The Secrets a workload asked to be restarted for (empty: it did not opt in)."""
    annotations = workload["metadata"].get("annotations") or {}
    names = {n.strip() for n in annotations.get(c.ANNOTATION_RELOAD, "").split(",") if n.strip()}
    if annotations.get(c.ANNOTATION_AUTO_RELOAD, "").lower() == "true":
        names |= referenced_secrets(workload["spec"].get("template") or {})
    return names


def seen_fingerprints(workload: Mapping[str, Any]) -> dict[str, str]:
    raw = (workload["metadata"].get("annotations") or {}).get(c.ANNOTATION_SEEN_FINGERPRINTS, "{}")
    try:
        seen = json.loads(raw)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in seen.items()} if isinstance(seen, dict) else {}


def restart_patch(
    workload: Mapping[str, Any], rotations: Mapping[str, Rotation], key: bytes, now: datetime
) -> tuple[dict[str, Any], list[str]] | None:
    """The one merge patch that restarts `workload` for the rotations it cares about, if any.

    Returns the patch and the names of the Secrets that caused it.
    """
    watched = watched_secrets(workload)
    seen = seen_fingerprints(workload)
    causes = sorted(
        name for name, rot in rotations.items() if name in watched and seen.get(name) != rot.fingerprint
    )
    if not causes:
        return None
    seen.update({name: rotations[name].fingerprint for name in causes})
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    patch = {
        "metadata": {"annotations": {c.ANNOTATION_SEEN_FINGERPRINTS: json.dumps(seen, sort_keys=True)}},
        "spec": {
            "template": {
                "metadata": {
                    "annotations": {
                        c.ANNOTATION_RESTARTED_AT: stamp,
                        c.ANNOTATION_RESTART_FINGERPRINT: combined(seen, key),
                    }
                }
            }
        },
    }
    return patch, causes


def _paused(kind: str, workload: Mapping[str, Any]) -> bool:
    return kind == "Deployment" and bool((workload.get("spec") or {}).get("paused"))


class _RateLimit:
    """At most `per_minute` restarts in any sliding minute; callers wait for a slot."""

    def __init__(self, per_minute: int) -> None:
        self._per_minute = max(1, per_minute)
        self._recent: deque[float] = deque()

    async def acquire(self) -> None:
        while True:
            now = time.monotonic()
            while self._recent and now - self._recent[0] >= 60.0:
                self._recent.popleft()
            if len(self._recent) < self._per_minute:
                self._recent.append(now)
                return
            await asyncio.sleep(60.0 - (now - self._recent[0]))


class Rollouts:
    """Collects rotations per namespace for one window, then restarts each workload that cares once."""

    def __init__(self, kube: Kube, key: bytes, window: float, per_minute: int) -> None:
        self._kube = kube
        self._key = key
        self._window = window
        self._limit = _RateLimit(per_minute)
        self._pending: dict[str, dict[str, Rotation]] = defaultdict(dict)
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        # (namespace, workload uid) → the changes its RestartDeferred Event named
        self._deferred: dict[tuple[str, str], str] = {}

    async def stop(self) -> None:
        """Restarts still inside their window are made now, so stopping the operator loses none.

        A paused workload, a restart held back by the cap and whatever is not done within
        the grace period cannot be finished by this process and are given up.
        """
        self._stopping = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for namespace in list(self._pending):
            self._flush(namespace)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_GRACE_SECONDS
        while self._tasks and (left := deadline - loop.time()) > 0:
            await asyncio.wait(set(self._tasks), timeout=left)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def secret_rotated(
        self, namespace: str, secret: str, fingerprint: str, external_secret: ObjectRef
    ) -> None:
        """A managed Secret's data changed (and is written); restart its users after the window."""
        self._pending[namespace][secret] = Rotation(secret, fingerprint, external_secret)
        if self._stopping:
            self._flush(namespace)
        else:
            self._flush_within(namespace, self._window)

    def _flush_within(self, namespace: str, delay: float) -> None:
        """Flush the namespace after `delay` at the latest (an earlier flush stays planned)."""
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        timer = self._timers.get(namespace)
        if timer is not None and timer.when() <= due:
            return
        if timer is not None:
            timer.cancel()
        self._timers[namespace] = loop.call_at(due, self._flush, namespace)

    def _flush(self, namespace: str) -> None:
        self._timers.pop(namespace, None)
        rotations = self._pending.pop(namespace, {})
        if rotations:
            task = asyncio.get_running_loop().create_task(self._restart_users(namespace, rotations))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _restart_users(self, namespace: str, rotations: dict[str, Rotation]) -> None:
        try:
            workloads = await self._kube.list_workloads(namespace)
        except VaultsyncError as exc:
            log.warning(
                "listing workloads failed; retrying",
                extra={"namespace": namespace, "detail": exc.message},
            )
            self._requeue(namespace, rotations, self._window)
            return
        live = {(namespace, workload["metadata"]["uid"]) for _, workload in workloads}
        for key in [k for k in self._deferred if k[0] == namespace and k not in live]:
            del self._deferred[key]
        deferred: dict[str, Rotation] = {}
        for kind, workload in workloads:
            for name in await self._restart_one(namespace, kind, workload, rotations):
                deferred[name] = rotations[name]
        if deferred:
            self._requeue(namespace, deferred, RECHECK_SECONDS)

    async def _restart_one(
        self, namespace: str, kind: str, workload: Body, rotations: dict[str, Rotation]
    ) -> list[str]:
        """Restarts one workload if it needs it; returns the rotations to retry later.

        The listed body only says whether a restart is due; the patch is planned from a
        fresh read taken after the rate limit let it through, and carries that read's
        resourceVersion, so a restart queued behind the cap or raced by another writer
        never overwrites newer seen-fingerprints with stale ones.
        """
        planned = restart_patch(workload, rotations, self._key, datetime.now(UTC))
        if planned is None:
            return []
        if _paused(kind, workload):
            await self._announce_deferral(namespace, kind, workload, rotations, planned[1])
            return planned[1]
        await self._limit.acquire()
        name = workload["metadata"]["name"]
        for _ in range(PATCH_ATTEMPTS):
            try:
                fresh = await self._kube.read_workload(kind, namespace, name)
            except KubeNotFound:
                return []
            except VaultsyncError as exc:
                self._warn_retry(kind, namespace, name, exc)
                return planned[1]
            planned = restart_patch(fresh, rotations, self._key, datetime.now(UTC))
            if planned is None:
                return []
            if _paused(kind, fresh):
                await self._announce_deferral(namespace, kind, fresh, rotations, planned[1])
                return planned[1]
            patch, causes = planned
            patch["metadata"]["resourceVersion"] = fresh["metadata"]["resourceVersion"]
            try:
                await self._kube.patch_workload(kind, namespace, name, patch)
            except KubeConflict:
                continue
            except KubeNotFound:
                return []
            except VaultsyncError as exc:
                self._warn_retry(kind, namespace, name, exc)
                return causes
            await self._restarted(namespace, kind, fresh, rotations, causes)
            return []
        return planned[1]

    async def _restarted(
        self, namespace: str, kind: str, workload: Body, rotations: dict[str, Rotation], causes: list[str]
    ) -> None:
        meta = workload["metadata"]
        self._deferred.pop((namespace, meta["uid"]), None)
        RESTARTS.labels(namespace=namespace, kind=kind).inc()
        log.info(
            "workload restarted",
            extra={"workload": f"{kind}/{namespace}/{meta['name']}", "secrets": causes},
        )
        ref = ObjectRef("apps/v1", kind, namespace, meta["name"], meta["uid"])
        await self._event(ref, "Normal", "Restarted", f"restarted: Secret {', '.join(causes)} changed")
        for name in causes:
            await self._event(
                rotations[name].external_secret,
                "Normal",
                "WorkloadRestarted",
                f"restarted {kind} {meta['name']}: Secret {name} changed",
            )

    async def _announce_deferral(
        self, namespace: str, kind: str, workload: Body, rotations: dict[str, Rotation], causes: list[str]
    ) -> None:
        """One Event per paused workload and set of changes, not one per recheck."""
        meta = workload["metadata"]
        changes = ",".join(f"{name}={rotations[name].fingerprint}" for name in causes)
        if self._deferred.get((namespace, meta["uid"])) == changes:
            return
        self._deferred[(namespace, meta["uid"])] = changes
        ref = ObjectRef("apps/v1", kind, namespace, meta["name"], meta["uid"])
        await self._event(
            ref,
            "Warning",
            "RestartDeferred",
            f"not restarted while paused: Secret {', '.join(causes)} changed; will restart when resumed",
        )

    def _warn_retry(self, kind: str, namespace: str, name: str, exc: VaultsyncError) -> None:
        log.warning(
            "restart failed; retrying",
            extra={"workload": f"{kind}/{namespace}/{name}", "detail": exc.message},
        )

    def _requeue(self, namespace: str, rotations: Mapping[str, Rotation], delay: float) -> None:
        if self._stopping:
            return
        for name, rotation in rotations.items():
            self._pending[namespace].setdefault(name, rotation)
        self._flush_within(namespace, delay)

    async def _event(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None:
        try:
            await self._kube.post_event(ref, type_, reason, message)
        except VaultsyncError as exc:
            log.warning("posting an event failed", extra={"detail": exc.message})
