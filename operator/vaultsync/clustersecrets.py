"""ClusterExternalSecrets: one ExternalSecret per selected namespace, kept as declared.

It exists because one declaration for every team's namespace is what cluster admins coming
from External Secrets Operator use every day. The watches deliver three things here: the
ClusterExternalSecrets, the namespaces (their labels decide who is selected), and the
ExternalSecrets it provisioned (labelled with its uid). A pass over one ClusterExternalSecret
creates what is missing, replaces what drifted, deletes what a namespace no longer selects,
and writes the status; it runs on any of those events (debounced) and every `refreshTime`.
What it decides is `clusterplan.py`'s; the ExternalSecrets it writes are then synced by the
scheduler like any other, with their namespace's permissions (docs/security.md).

It never touches an ExternalSecret that is not its own: a name taken by another object is a
failed namespace with the reason. It deletes only its own children (uid precondition), only
in a namespace the namespace watch has delivered and that no longer matches; a deleted
ClusterExternalSecret's children go by garbage collection (ownerReference), as do those of a
deleted namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from vaultsync import constants as c
from vaultsync.clusterplan import (
    ClusterExternalSecret,
    Namespace,
    controller_uid,
    desired_external_secret,
    invalid_status,
    material,
    namespace_of,
    parse_cluster_external_secret,
    replacement,
    select_namespaces,
    status,
)
from vaultsync.errors import InvalidSpec, KubeConflict, KubeNotFound, VaultsyncError, crash_fields
from vaultsync.kube import Body, Kube

log = logging.getLogger(__name__)

Key = tuple[str, str]  # namespace, name


@dataclass(frozen=True)
class _Child:
    """An ExternalSecret labelled as a ClusterExternalSecret's, as the watch last delivered it."""

    body: Mapping[str, Any]
    owner: str | None  # the controlling ClusterExternalSecret's uid

    @property
    def uid(self) -> str:
        uid: str = self.body["metadata"].get("uid", "")
        return uid


class ClusterSecrets:
    def __init__(self, kube: Kube, watched: frozenset[str] | None = None) -> None:
        self._kube = kube
        self._watched = watched
        self._bodies: dict[str, Mapping[str, Any]] = {}  # ClusterExternalSecrets by name
        self._namespaces: dict[str, Namespace] = {}
        self._children: dict[Key, _Child] = {}
        self._due: dict[str, float] = {}  # name -> monotonic time of its next pass
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # What the watches deliver -------------------------------------------------------------

    def observe(self, body: Mapping[str, Any], deleted: bool) -> None:
        name = body["metadata"]["name"]
        if deleted:
            self._bodies.pop(name, None)
            self._due.pop(name, None)
            return
        old = self._bodies.get(name)
        self._bodies[name] = body
        if old is None or _generation(old) != _generation(body):
            self._soon(name)

    def namespace_changed(self, body: Mapping[str, Any], deleted: bool) -> None:
        name = body["metadata"]["name"]
        new = None if deleted else namespace_of(body)
        if self._namespaces.get(name) == new:
            return
        if new is None:
            self._namespaces.pop(name, None)
        else:
            self._namespaces[name] = new
        for ces in self._bodies:
            self._soon(ces)

    def external_secret_changed(self, body: Mapping[str, Any], deleted: bool) -> None:
        """Children drifting or deleted are put back; a foreign one deleted frees its name."""
        meta = body["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        labelled = c.LABEL_CLUSTER_EXTERNAL_SECRET in (meta.get("labels") or {})
        if deleted or not labelled:
            gone = self._children.pop(key, None)
            if deleted or gone is not None:
                self._touch_by_child_name(meta["name"])
            return
        child = _child(body)
        self._children[key] = child
        for name, ces in self._bodies.items():
            if ces["metadata"].get("uid") == child.owner:
                self._soon(name)

    async def relisted(self, seen: set[Hashable]) -> None:
        """A listing of ExternalSecrets is over (relist.py): a child it lacked was deleted while
        the watch was away, unless a GET finds it; gone, it is provisioned again."""
        for key in [k for k in self._children if k not in seen]:
            try:
                body = await self._kube.read_custom(c.EXTERNAL_SECRETS, *key)
            except KubeNotFound:
                gone = self._children.pop(key, None)
                if gone is not None:
                    self._touch_by_child_name(key[1])
                continue
            except VaultsyncError:
                continue
            self.external_secret_changed(body, deleted=False)

    def _touch_by_child_name(self, child: str) -> None:
        for name, body in self._bodies.items():
            spec = body.get("spec") or {}
            if (spec.get("externalSecretName") or name) == child:
                self._soon(name)

    def _soon(self, name: str) -> None:
        due = time.monotonic() + c.CLUSTER_ES_DEBOUNCE_SECONDS
        if self._due.get(name, float("inf")) > due:
            self._due[name] = due
        self._wake.set()

    # The worker ---------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def halt(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    async def _run(self) -> None:
        while True:
            now = time.monotonic()
            due = sorted(name for name, at in self._due.items() if at <= now)
            if not due:
                self._wake.clear()
                wait = min(self._due.values(), default=now + 60.0) - now
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=max(wait, 0.05))
                continue
            for name in due:
                self._due.pop(name, None)
                next_pass = await self._pass_safely(name)
                if next_pass is not None and name in self._bodies:
                    self._due.setdefault(name, time.monotonic() + next_pass)

    async def _pass_safely(self, name: str) -> float | None:
        body = self._bodies.get(name)
        if body is None:
            return None
        try:
            return await self.reconcile(body)
        except VaultsyncError as exc:
            log.warning("ClusterExternalSecret pass failed", extra={"name": name, "detail": exc.message})
            return c.CLUSTER_ES_REFRESH_MIN_SECONDS
        except Exception as exc:  # a bug must not stop every other ClusterExternalSecret
            log.error("ClusterExternalSecret pass crashed", extra={"name": name, **crash_fields(exc)})
            return c.CLUSTER_ES_REFRESH_MIN_SECONDS

    # One pass -----------------------------------------------------------------------------

    async def reconcile(self, body: Mapping[str, Any]) -> float | None:
        """One pass over a ClusterExternalSecret; returns when the next is due (seconds)."""
        meta = body["metadata"]
        old: Mapping[str, Any] = body.get("status") or {}
        try:
            ces = parse_cluster_external_secret(body)
        except InvalidSpec as exc:
            await self._write_status(
                meta["name"], old, invalid_status(old, meta.get("generation", 0), exc.message)
            )
            return None
        selection = select_namespaces(ces.spec, self._namespaces, self._watched)
        failed = dict(selection.failed)
        provisioned: set[str] = set()
        limit = asyncio.Semaphore(c.CLUSTER_ES_CONCURRENCY)

        async def provision(namespace: str) -> None:
            async with limit:
                reason = await self._provision(ces, namespace)
            if reason is None:
                provisioned.add(namespace)
            else:
                failed[namespace] = reason

        await asyncio.gather(*(provision(ns) for ns in sorted(selection.targets)))
        await self._prune(ces, selection.targets)
        await self._write_status(ces.name, old, status(old, ces, provisioned, failed))
        return ces.refresh_seconds

    async def _provision(self, ces: ClusterExternalSecret, namespace: str) -> str | None:
        """Creates or updates the child in `namespace`; the reason it failed, or None."""
        desired = desired_external_secret(ces, namespace)
        key = (namespace, ces.child_name)
        try:
            child = self._children.get(key)
            if child is None or child.owner != ces.uid:
                try:
                    created = await self._kube.create_custom(c.EXTERNAL_SECRETS, namespace, desired)
                except KubeConflict:
                    existing = await self._kube.read_custom(c.EXTERNAL_SECRETS, namespace, ces.child_name)
                    if controller_uid(existing) != ces.uid:
                        return (
                            f"ExternalSecret {namespace}/{ces.child_name} already exists and is not owned "
                            f"by this ClusterExternalSecret; it was left untouched"
                        )
                    child = _child(existing)
                else:
                    self._children[key] = _child(created)
                    return None
            await self._put_back(key, child.body, desired, ces.uid)
        except KubeNotFound:
            # Deleted while the namespace watch was away: the next pass no longer selects it.
            self._namespaces.pop(namespace, None)
            return "namespace does not exist"
        except VaultsyncError as exc:
            return exc.message
        return None

    async def _put_back(self, key: Key, existing: Mapping[str, Any], desired: Body, uid: str) -> None:
        """Replaces an owned child that drifted; a write lost to a concurrent one (409) is
        planned again once from the object as read, if it is still this one's."""
        namespace, name = key
        for attempt in (1, 2):
            body = replacement(existing, desired)
            if body is None:
                return
            try:
                replaced = await self._kube.replace_custom(c.EXTERNAL_SECRETS, namespace, name, body)
            except KubeConflict:
                if attempt == 2:
                    raise
                existing = await self._kube.read_custom(c.EXTERNAL_SECRETS, namespace, name)
                if controller_uid(existing) != uid:
                    raise
                continue
            self._children[key] = _child(replaced)
            return

    async def _prune(self, ces: ClusterExternalSecret, targets: frozenset[str]) -> None:
        """Deletes its children in namespaces known and no longer selected, or under an old name."""
        for (namespace, name), child in list(self._children.items()):
            if child.owner != ces.uid or namespace not in self._namespaces:
                continue
            if namespace in targets and name == ces.child_name:
                continue
            try:
                await self._kube.delete_custom(c.EXTERNAL_SECRETS, namespace, name, child.uid)
            except VaultsyncError as exc:
                log.warning(
                    "ClusterExternalSecret child not deleted",
                    extra={"name": ces.name, "externalSecret": f"{namespace}/{name}", "detail": exc.message},
                )
                continue
            self._children.pop((namespace, name), None)

    async def _write_status(self, name: str, old: Mapping[str, Any], new: dict[str, Any]) -> None:
        if material({**old, **new}) == material(old):
            return
        try:
            await self._kube.patch_status(c.CLUSTER_EXTERNAL_SECRETS, None, name, new)
        except KubeNotFound:
            # Deleted while the watch was away: no more passes (its children go by GC).
            self._bodies.pop(name, None)
            self._due.pop(name, None)
            return
        body = self._bodies.get(name)
        if body is not None:
            self._bodies[name] = {**body, "status": {**old, **new}}


def _child(body: Mapping[str, Any]) -> _Child:
    """What a pass compares of an ExternalSecret, not its managedFields or status."""
    meta = body["metadata"]
    kept = ("name", "namespace", "uid", "resourceVersion", "labels", "annotations", "ownerReferences")
    slim = {"metadata": {k: meta[k] for k in kept if k in meta}, "spec": body.get("spec") or {}}
    return _Child(slim, controller_uid(body))


def _generation(body: Mapping[str, Any]) -> int:
    generation: int = body["metadata"].get("generation", 0)
    return generation
