"""Rolling restarts of the workloads that opted in, when a Secret's or ConfigMap's data really changed.

The rules users of Reloader ask for, built in:
- restart only after the new Secret is written, and only on a real change of
  data (never on first sync, on opt-in, or on operator restart): the last
  fingerprint a workload was restarted for is kept on its own metadata, so a
  repeated notification is a no-op;
- coalesce: changes to several Secrets of a namespace make one patch per
  workload, so one new ReplicaSet. A namespace's changes are restarted once
  none arrived for a short quiet period, and never later than the window after
  the first of them, so a burst is one restart and a trickle cannot hold it back;
- restart = patch a pod-template annotation, so the workload's own strategy
  (maxUnavailable, partitions) governs the rollout;
- a paused Deployment is not patched; an Event says why, and the restart is
  retried until it is resumed;
- a cluster-wide cap on restarts per minute; the excess waits, it is not dropped;
- a stopping operator makes the restarts still waiting for their window at once,
  so an upgrade or eviction of the operator does not swallow a rotation.

One list per namespace and flush finds the workloads; they are patched a bounded
number at a time, and Events are posted in the background, so fifty workloads
of one rotation take about as long as a few.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from vaultsync import constants as c
from vaultsync.budget import TokenBucket
from vaultsync.conditions import timestamp
from vaultsync.errors import KubeConflict, KubeNotFound, VaultsyncError, crash_fields
from vaultsync.events import EventSink
from vaultsync.fingerprints import combined
from vaultsync.kube import WORKLOAD_KINDS, Body, Kube, ObjectRef
from vaultsync.metrics import RESTART_BACKLOG, RESTARTS
from vaultsync.reloadrefs import describe, referenced, watched

log = logging.getLogger(__name__)

DEFAULT_QUIET_SECONDS = 1.0  # no further change for this long: the burst is over
DEFAULT_WINDOW_SECONDS = 5.0  # the latest a change waits for others to join it
RECHECK_SECONDS = 10.0  # how often paused workloads and failed restarts are tried again
STOP_GRACE_SECONDS = 5.0  # within the 10 s a Pod gets between SIGTERM and SIGKILL by default
EVENT_DRAIN_SECONDS = 1.0  # what Events still queued at stop get after the restarts are done
PATCH_ATTEMPTS = 3  # a workload's resourceVersion moves with every status update
RESTART_CONCURRENCY = 12  # workloads patched at once, across namespaces
EVENT_CONCURRENCY = 4  # Events posted at once, so they never crowd out the patches
MAX_QUEUED_EVENTS = 1000  # beyond this (an API server that stopped answering) Events are dropped


@dataclass(frozen=True)
class Rotation:
    # The watch key (reloadrefs.py): a Secret's name, or `configmap/<name>`.
    secret: str
    fingerprint: str
    # Only where Events go: the same rotation resumed from the Secret is the same rotation.
    # None for an object vaultsync does not manage (no ExternalSecret to tell).
    external_secret: ObjectRef | None = field(compare=False)
    # An object vaultsync does not manage carries no pending-restart mark to clear.
    managed: bool = field(default=True, compare=False)
    # It carries Reloader's `match` annotation (counts for workloads in search mode).
    matched: bool = field(default=True, compare=False)
    # First sight of an unmanaged object (operator start, new reference): only workloads that
    # were restarted for an older version of it (their seen-fingerprints say so) restart.
    only_if_seen: bool = field(default=False, compare=False)


def pending_rotation(secret: Mapping[str, Any]) -> Rotation | None:
    """The restart a Secret still waits for (its pending-restart annotation), if any."""
    meta = secret["metadata"]
    annotations = meta.get("annotations") or {}
    fingerprint = annotations.get(c.ANNOTATION_PENDING_RESTART)
    if not fingerprint or fingerprint != annotations.get(c.ANNOTATION_DATA_FINGERPRINT):
        return None  # not the rotation of the data the Secret holds
    owner = (meta.get("labels") or {}).get(c.LABEL_OWNER_NAME) or ""
    uid = next(
        (ref.get("uid", "") for ref in meta.get("ownerReferences") or [] if ref.get("name") == owner),
        "",
    )
    ref = ObjectRef(c.API_VERSION, c.KIND_EXTERNAL_SECRET, meta["namespace"], owner, uid)
    return Rotation(meta["name"], fingerprint, ref)


def referenced_secrets(template: Mapping[str, Any]) -> set[str]:
    """Secrets a pod template reads: env, envFrom, volumes and projected volumes, init containers too."""
    return referenced(template)[0]


def watched_secrets(workload: Mapping[str, Any], kind: str = "Deployment") -> set[str]:
    """The watch keys a workload asked to be restarted for (empty: it did not opt in)."""
    return watched(kind, workload).all_keys()


def seen_fingerprints(workload: Mapping[str, Any]) -> dict[str, str]:
    raw = (workload["metadata"].get("annotations") or {}).get(c.ANNOTATION_SEEN_FINGERPRINTS, "{}")
    try:
        seen = json.loads(raw)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in seen.items()} if isinstance(seen, dict) else {}


def restart_patch(
    workload: Mapping[str, Any],
    rotations: Mapping[str, Rotation],
    key: bytes,
    now: datetime,
    kind: str = "Deployment",
) -> tuple[dict[str, Any], list[str]] | None:
    """The one merge patch that restarts `workload` for the rotations it cares about, if any.

    Returns the patch and the watch keys of the objects that caused it. A pod template
    annotation restarts a Deployment, StatefulSet or DaemonSet, a CronJob's job template
    (its next Jobs), and an Argo Rollout gets `spec.restartAt` (its own restart, which keeps
    its canary or blue-green steps out of it).
    """
    wants = watched(kind, workload)
    seen = seen_fingerprints(workload)
    causes = sorted(
        name
        for name, rot in rotations.items()
        if wants.wants(name, rot.matched)
        and seen.get(name) != rot.fingerprint
        and (not rot.only_if_seen or name in seen)
    )
    if not causes:
        return None
    seen.update({name: rotations[name].fingerprint for name in causes})
    stamp = timestamp(now)
    marks = {c.ANNOTATION_RESTARTED_AT: stamp, c.ANNOTATION_RESTART_FINGERPRINT: combined(seen, key)}
    spec: dict[str, Any]
    if kind == "Rollout":
        spec = {"restartAt": stamp}
    elif kind == "CronJob":
        spec = {"jobTemplate": {"spec": {"template": {"metadata": {"annotations": marks}}}}}
    else:
        spec = {"template": {"metadata": {"annotations": marks}}}
    patch = {
        "metadata": {"annotations": {c.ANNOTATION_SEEN_FINGERPRINTS: json.dumps(seen, sort_keys=True)}},
        "spec": spec,
    }
    return patch, causes


def _paused(kind: str, workload: Mapping[str, Any]) -> bool:
    return kind == "Deployment" and bool((workload.get("spec") or {}).get("paused"))


class Batches:
    """The rotations waiting in each namespace, and when each namespace's batch is due.

    Pure bookkeeping, the caller passes the time. A batch is due `quiet` seconds after its
    last new rotation, and never later than `window` seconds after its first. The same
    rotation notified again (a recheck) is not new. Rotations put back for a retry (a
    paused workload, a failed patch) are due at their retry time, or with the next batch
    of new rotations, whichever comes first to be planned.
    """

    def __init__(self, quiet: float, window: float) -> None:
        self.window = max(0.0, window)
        self.quiet = min(max(0.0, quiet), self.window)
        self._rotations: dict[str, dict[str, Rotation]] = {}
        self._first: dict[str, float] = {}
        self._last: dict[str, float] = {}
        self._retry: dict[str, float] = {}
        self._urgent: dict[str, float] = {}

    def add(self, namespace: str, rotation: Rotation, now: float) -> None:
        pending = self._rotations.setdefault(namespace, {})
        if pending.get(rotation.secret) == rotation:
            return
        pending[rotation.secret] = rotation
        self._first.setdefault(namespace, now)
        self._last[namespace] = now

    def put_back(self, namespace: str, rotations: Mapping[str, Rotation], at: float) -> None:
        """Rotations to try again at `at` at the latest; a newer rotation of a Secret wins."""
        pending = self._rotations.setdefault(namespace, {})
        for name, rotation in rotations.items():
            pending.setdefault(name, rotation)
        self._retry[namespace] = min(at, self._retry.get(namespace, at))

    def hurry(self, namespace: str, at: float) -> None:
        """An urgent rotation: the namespace's batch is due at `at` at the latest."""
        self._urgent[namespace] = min(at, self._urgent.get(namespace, at))

    def hurried(self, namespace: str) -> bool:
        return namespace in self._urgent

    def due(self, namespace: str) -> float | None:
        if namespace in self._first:
            due = min(self._last[namespace] + self.quiet, self._first[namespace] + self.window)
            return min(due, self._urgent.get(namespace, due))
        return self._retry.get(namespace)

    def take(self, namespace: str) -> dict[str, Rotation]:
        for times in (self._first, self._last, self._retry, self._urgent):
            times.pop(namespace, None)
        return self._rotations.pop(namespace, {})

    def namespaces(self) -> list[str]:
        return list(self._rotations)

    def size(self) -> int:
        return sum(len(rotations) for rotations in self._rotations.values())


def restart_budget(per_minute: int) -> TokenBucket:
    """A burst of `per_minute` restarts, then `per_minute` a minute (at least one); the excess waits."""
    return TokenBucket(rate=max(1, per_minute) / 60.0, burst=max(1, per_minute))


class _Background:
    """Tasks nobody waits for, kept so that stop can drain them; at most `limit` run at once.

    With a `queue` bound, new work beyond it is dropped (and counted in a warning): Events
    can only pile up that far when the API server stopped answering.
    """

    def __init__(self, what: str, limit: int | None = None, queue: int | None = None) -> None:
        self._what = what
        self._slots = asyncio.Semaphore(max(1, limit)) if limit is not None else None
        self._queue = queue
        self._tasks: set[asyncio.Task[None]] = set()
        self._dropped = 0

    def start(self, work: Coroutine[Any, Any, None]) -> None:
        if self._queue is not None and len(self._tasks) >= self._queue:
            work.close()
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 100 == 0:
                log.warning("background work dropped", extra={"what": self._what, "dropped": self._dropped})
            return
        task = asyncio.get_running_loop().create_task(self._run(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            if self._slots is None:
                await work
            else:
                async with self._slots:
                    await work
        except Exception as exc:
            log.error(f"{self._what} crashed", extra=crash_fields(exc))
        finally:
            work.close()  # cancelled before it started: no "never awaited" warning

    def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()

    async def drain(self, deadline: float) -> None:
        """Wait for the tasks until `deadline` (loop time), then cancel what is left."""
        loop = asyncio.get_running_loop()
        while self._tasks and (left := deadline - loop.time()) > 0:
            await asyncio.wait(set(self._tasks), timeout=left)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class Rollouts:
    """Collects rotations per namespace until they are due, then restarts each workload that cares once."""

    def __init__(
        self,
        kube: Kube,
        key: bytes,
        window: float = DEFAULT_WINDOW_SECONDS,
        per_minute: int = 60,
        *,
        events: EventSink,
        quiet: float = DEFAULT_QUIET_SECONDS,
        concurrency: int = RESTART_CONCURRENCY,
    ) -> None:
        self._kube = kube
        self._recorder = events
        self._key = key
        self._batches = Batches(quiet, window)
        self._limit = restart_budget(per_minute)
        RESTART_BACKLOG.set_function(lambda: self._batches.size() + self._limit.waiting)
        self._slots = asyncio.Semaphore(max(1, concurrency))
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._flushes = _Background("restarts")  # one per namespace and batch; the patches are bounded
        self._events = _Background("events", limit=EVENT_CONCURRENCY, queue=MAX_QUEUED_EVENTS)
        self._stopping = False
        # (namespace, workload uid) → the changes its RestartDeferred Event named
        self._deferred: dict[tuple[str, str], str] = {}
        # namespace → when its last urgent batch began (one per window, see `_hurry`)
        self._urgent_since: dict[str, float] = {}

    def halt(self) -> None:
        """Leadership lost: every pending restart is dropped and the running ones cancelled,
        at once (the Kube client refuses their writes from now on anyway)."""
        self._stopping = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._batches = Batches(self._batches.quiet, self._batches.window)
        self._flushes.cancel()
        self._events.cancel()

    async def stop(self) -> None:
        """Restarts still waiting for their batch are made now, so stopping the operator loses none.

        A paused workload, a restart held back by the cap and whatever is not done within
        the grace period cannot be finished by this process and are given up. Events still
        queued get a short while more.
        """
        self._stopping = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for namespace in self._batches.namespaces():
            self._flush(namespace)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_GRACE_SECONDS
        await self._flushes.drain(deadline)
        await self._events.drain(max(deadline, loop.time() + EVENT_DRAIN_SECONDS))

    async def secret_rotated(
        self, namespace: str, secret: str, fingerprint: str, external_secret: ObjectRef, urgent: bool = False
    ) -> None:
        """A managed Secret's data changed (and is written); restart its users once the batch is due.

        `urgent` (an urgent force-sync found it, `vaultsync respond`): the batch is due within
        RESTART_URGENT_DELAY_SECONDS, whatever the quiet period and window say."""
        self._add(namespace, Rotation(secret, fingerprint, external_secret), urgent)

    def object_changed(
        self, namespace: str, key: str, fingerprint: str, *, matched: bool, first_sight: bool
    ) -> None:
        """A ConfigMap or a Secret vaultsync does not manage changed (unmanaged.py)."""
        self._add(
            namespace,
            Rotation(key, fingerprint, None, managed=False, matched=matched, only_if_seen=first_sight),
        )

    def resume(self, secret: Mapping[str, Any]) -> None:
        """A Secret listed with a pending-restart mark: a rotation whose restart a previous
        run (or this one, before a crash) did not finish. Batched like a new rotation;
        workloads that already have it are not restarted again."""
        rotation = pending_rotation(secret)
        if rotation is None:
            return
        namespace = secret["metadata"]["namespace"]
        log.info("resuming a pending restart", extra={"secret": f"{namespace}/{rotation.secret}"})
        self._add(namespace, rotation)

    def _add(self, namespace: str, rotation: Rotation, urgent: bool = False) -> None:
        now = asyncio.get_running_loop().time()
        self._batches.add(namespace, rotation, now)
        if urgent:
            self._hurry(namespace, now)
        if self._stopping:
            self._flush(namespace)
        else:
            self._plan(namespace)

    def _hurry(self, namespace: str, now: float) -> None:
        """Make the namespace's batch due now (after a short delay that lets the other urgent
        syncs of the same response join it, so a workload restarts once for all of them).

        A tenant may set an urgent force-sync on its own ExternalSecrets, so urgency is bounded:
        a namespace starts at most one urgent batch per window (its workloads then restart no
        more often than the window already allows), restarts still take their turn under the
        cluster-wide cap, and only this namespace's batch is affected."""
        if not self._batches.hurried(namespace):
            started = self._urgent_since.get(namespace)
            if started is not None and now - started < self._batches.window:
                log.info("urgent restart batched normally: one per window", extra={"namespace": namespace})
                return
            self._urgent_since[namespace] = now
        self._batches.hurry(namespace, now + c.RESTART_URGENT_DELAY_SECONDS)

    def _plan(self, namespace: str) -> None:
        """(Re)arm the namespace's timer for when its batch is due."""
        due = self._batches.due(namespace)
        timer = self._timers.get(namespace)
        if timer is not None:
            if timer.when() == due:
                return
            timer.cancel()
            del self._timers[namespace]
        if due is not None:
            self._timers[namespace] = asyncio.get_running_loop().call_at(due, self._flush, namespace)

    def _flush(self, namespace: str) -> None:
        self._timers.pop(namespace, None)
        rotations = self._batches.take(namespace)
        if rotations:
            self._flushes.start(self._restart_users(namespace, rotations))

    def _put_back(self, namespace: str, rotations: Mapping[str, Rotation], delay: float) -> None:
        if self._stopping:
            return
        self._batches.put_back(namespace, rotations, asyncio.get_running_loop().time() + delay)
        self._plan(namespace)

    async def _restart_users(self, namespace: str, rotations: dict[str, Rotation]) -> None:
        try:
            workloads = await self._kube.list_workloads(namespace)
        except VaultsyncError as exc:
            log.warning(
                "listing workloads failed; retrying",
                extra={"namespace": namespace, "detail": exc.message},
            )
            self._put_back(namespace, rotations, max(self._batches.window, 1.0))
            return
        live = {(namespace, workload["metadata"]["uid"]) for _, workload in workloads}
        for key in [k for k in self._deferred if k[0] == namespace and k not in live]:
            del self._deferred[key]
        now = datetime.now(UTC)
        due = [
            (kind, w)
            for kind, w in workloads
            if restart_patch(w, rotations, self._key, now, kind) is not None
        ]
        outcomes = await asyncio.gather(
            *(self._restart_one(namespace, kind, workload, rotations) for kind, workload in due),
            return_exceptions=True,
        )
        retry: dict[str, Rotation] = {}
        for (kind, workload), outcome in zip(due, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, Exception):
                    raise outcome  # cancelled: the operator is stopping
                log.error("restart crashed", extra=crash_fields(outcome))
                outcome = _causes(kind, workload, rotations)
            retry.update({name: rotations[name] for name in outcome})
        if retry:
            self._put_back(namespace, retry, RECHECK_SECONDS)
        for name, rotation in rotations.items():
            if name not in retry and rotation.managed:
                await self._done(namespace, rotation)

    async def _done(self, namespace: str, rotation: Rotation) -> None:
        """Every opted-in workload has this rotation: its pending-restart mark goes.

        Read, then replace guarded by resourceVersion, and only while the mark still names
        this fingerprint (a newer rotation keeps its own). Left in place on an error: the
        next start resumes it, and the workloads' seen-fingerprints make that a no-op.
        """
        for _ in range(PATCH_ATTEMPTS):
            try:
                secret = await self._kube.read_secret(namespace, rotation.secret)
                annotations = dict(secret["metadata"].get("annotations") or {})
                if annotations.get(c.ANNOTATION_PENDING_RESTART) != rotation.fingerprint:
                    return
                del annotations[c.ANNOTATION_PENDING_RESTART]
                secret["metadata"]["annotations"] = annotations
                await self._kube.replace_secret(namespace, rotation.secret, secret)
                return
            except KubeConflict:
                continue
            except KubeNotFound:
                return
            except VaultsyncError as exc:
                log.warning(
                    "pending-restart mark not cleared",
                    extra={"secret": f"{namespace}/{rotation.secret}", "detail": exc.message},
                )
                return

    async def _restart_one(
        self, namespace: str, kind: str, workload: Body, rotations: dict[str, Rotation]
    ) -> list[str]:
        """Restarts one workload if it needs it; returns the rotations to retry later.

        The first patch is planned from the listed body and carries its resourceVersion; if
        the workload changed since (a status update, another writer, a wait behind the cap)
        the API server refuses it and the patch is planned again from a fresh read, so newer
        seen-fingerprints are never overwritten with stale ones.
        """
        planned = restart_patch(workload, rotations, self._key, datetime.now(UTC), kind)
        if planned is None:
            return []
        causes = planned[1]
        if _paused(kind, workload):
            self._announce_deferral(namespace, kind, workload, rotations, causes)
            return causes
        await self._limit.acquire()
        name = workload["metadata"]["name"]
        body: Body | None = workload
        async with self._slots:
            for _ in range(PATCH_ATTEMPTS):
                if body is None:
                    try:
                        body = await self._kube.read_workload(kind, namespace, name)
                    except KubeNotFound:
                        return []
                    except VaultsyncError as exc:
                        self._warn_retry(kind, namespace, name, exc)
                        return causes
                planned = restart_patch(body, rotations, self._key, datetime.now(UTC), kind)
                if planned is None:
                    return []
                patch, causes = planned
                if _paused(kind, body):
                    self._announce_deferral(namespace, kind, body, rotations, causes)
                    return causes
                patch["metadata"]["resourceVersion"] = body["metadata"]["resourceVersion"]
                try:
                    await self._kube.patch_workload(kind, namespace, name, patch)
                except KubeConflict:
                    body = None
                    continue
                except KubeNotFound:
                    return []
                except VaultsyncError as exc:
                    self._warn_retry(kind, namespace, name, exc)
                    return causes
                self._restarted(namespace, kind, body, rotations, causes)
                return []
        return causes

    def _restarted(
        self, namespace: str, kind: str, workload: Body, rotations: dict[str, Rotation], causes: list[str]
    ) -> None:
        meta = workload["metadata"]
        self._deferred.pop((namespace, meta["uid"]), None)
        RESTARTS.labels(namespace=namespace, kind=kind).inc()
        log.info(
            "workload restarted",
            extra={"workload": f"{kind}/{namespace}/{meta['name']}", "secrets": causes},
        )
        ref = ObjectRef(WORKLOAD_KINDS[kind][0], kind, namespace, meta["name"], meta["uid"])
        self._event(ref, "Normal", "Restarted", f"restarted: {describe(causes)} changed")
        for name in causes:
            external_secret = rotations[name].external_secret
            if external_secret is not None:
                self._event(
                    external_secret,
                    "Normal",
                    "WorkloadRestarted",
                    f"restarted {kind} {meta['name']}: Secret {name} changed",
                )

    def _announce_deferral(
        self, namespace: str, kind: str, workload: Body, rotations: dict[str, Rotation], causes: list[str]
    ) -> None:
        """One Event per paused workload and set of changes, not one per recheck."""
        meta = workload["metadata"]
        changes = ",".join(f"{name}={rotations[name].fingerprint}" for name in causes)
        if self._deferred.get((namespace, meta["uid"])) == changes:
            return
        self._deferred[(namespace, meta["uid"])] = changes
        ref = ObjectRef(WORKLOAD_KINDS[kind][0], kind, namespace, meta["name"], meta["uid"])
        self._event(
            ref,
            "Warning",
            "RestartDeferred",
            f"not restarted while paused: {describe(causes)} changed; will restart when resumed",
        )

    def _warn_retry(self, kind: str, namespace: str, name: str, exc: VaultsyncError) -> None:
        log.warning(
            "restart failed; retrying",
            extra={"workload": f"{kind}/{namespace}/{name}", "detail": exc.message},
        )

    def _event(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None:
        """Posted in the background: a restart never waits for its Events."""
        self._events.start(self._recorder.post_event(ref, type_, reason, message))


def _causes(kind: str, workload: Body, rotations: Mapping[str, Rotation]) -> list[str]:
    """The rotations a workload watches: what to retry when its restart could not be made."""
    return sorted(name for name in watched_secrets(workload, kind) if name in rotations)
