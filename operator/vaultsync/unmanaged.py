"""Restarts for ConfigMaps and Secrets vaultsync does not write (Reloader's job, built in).

vaultsync knows when its own Secrets rotate: it wrote them. Any other ConfigMap or Secret
changes behind its back, so it is recognised by a keyed digest of its data, compared with
the digest seen before. Three rules keep that cheap and safe:

- only objects that some opted-in workload references are remembered, and only as a
  digest (never a value): the workloads are watched to know which, so the memory follows
  what workloads ask for, not how many ConfigMaps the cluster holds;
- the first digest of an object (operator start, a workload that newly references it)
  restarts nothing, except a workload that was restarted for an older version of it and
  missed a change while the operator was down: its `seen-fingerprints` annotation, the
  digest persisted on the workload itself, says so;
- a workload's opt-in is a tenant's input (reloadrefs.py): names of its own namespace only,
  a bounded count, and a refusal is a Warning Event naming the annotation.

The rotations go to the same Rollouts as vaultsync's own, so they are coalesced per
namespace, rate-capped, and applied exactly once per change.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from vaultsync import constants as c
from vaultsync.errors import KubeNotFound, VaultsyncError
from vaultsync.events import EventSink
from vaultsync.fingerprints import data_hmac, namespace_key
from vaultsync.kube import WORKLOAD_KINDS, Kube, ObjectRef
from vaultsync.metrics import RELOAD_DIGESTS
from vaultsync.reloadrefs import CONFIGMAP_PREFIX, configmap_key, watched
from vaultsync.rollout import Rollouts, seen_fingerprints

log = logging.getLogger(__name__)

# A referenced Secret that vaultsync writes: its rotations come from the reconciler.
MANAGED = "managed"
# A workload of the initial listing references an object whose digest the watch has not
# delivered: it is read only once this long has passed since start, as the ConfigMap and
# Secret listings usually deliver it first (a start costs no read per reference). A
# workload created or changed while running gets its objects read at once, so a change
# right after it opts in is not mistaken for the baseline.
FIRST_READ_DELAY_SECONDS = c.RELIST_QUIET_SECONDS

Where = tuple[str, str]  # (namespace, watch key or workload uid)


@dataclass
class _Workload:
    keys: frozenset[str]
    seen: dict[str, str] = field(default_factory=dict)  # its seen-fingerprints, for its keys only


def _decoded(value: Any) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        return str(value).encode()


def object_digest(key: bytes, namespace: str, kind: str, body: Mapping[str, Any]) -> str:
    """A keyed digest of an object's data: equal data, equal digest; reveals nothing."""
    data: dict[str, bytes] = {}
    if kind == "ConfigMap":
        data.update({"data/" + k: str(v).encode() for k, v in (body.get("data") or {}).items()})
        data.update({"binaryData/" + k: _decoded(v) for k, v in (body.get("binaryData") or {}).items()})
    else:
        data.update({k: _decoded(v) for k, v in (body.get("data") or {}).items()})
    return data_hmac(namespace_key(key, namespace), data)


def _managed(body: Mapping[str, Any]) -> bool:
    """vaultsync writes it (its own Secret, or a Merge target): the reconciler reports its
    rotations, with its own fingerprint; a second, digest-based one would restart twice."""
    meta = body.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    return labels.get(c.LABEL_MANAGED_BY) == c.MANAGED_BY_VALUE or c.ANNOTATION_MERGED_BY in annotations


class Unmanaged:
    """Digests of the referenced ConfigMaps and unmanaged Secrets, and who references them."""

    def __init__(self, kube: Kube, rollouts: Rollouts, key: bytes, *, events: EventSink) -> None:
        self._kube = kube
        self._events = events
        self._rollouts = rollouts
        self._key = key
        self._workloads: dict[Where, _Workload] = {}
        self._users: dict[Where, set[str]] = {}  # (namespace, watch key) -> workload uids
        self._digests: dict[Where, str] = {}
        self._refused: dict[Where, str] = {}  # (namespace, uid) -> the refusal last announced
        self._reads = asyncio.Semaphore(c.REFERENCE_READ_CONCURRENCY)
        self._tasks: set[asyncio.Task[None]] = set()
        self._reads_from = time.monotonic() + FIRST_READ_DELAY_SECONDS  # first reads wait till then

    def _remember(self, where: Where, digest: str) -> None:
        self._digests[where] = digest
        RELOAD_DIGESTS.set(len(self._digests))

    def _forget(self, where: Where) -> None:
        self._digests.pop(where, None)
        RELOAD_DIGESTS.set(len(self._digests))

    # Workloads -------------------------------------------------------------------------------

    def workload_changed(
        self, kind: str, body: Mapping[str, Any], deleted: bool, listed: bool = False
    ) -> None:
        meta = body["metadata"]
        at: Where = (meta["namespace"], meta["uid"])
        wants = watched(kind, body)
        keys = frozenset() if deleted else frozenset(wants.all_keys())
        if not deleted:
            self._announce_refusal(kind, body, "; ".join(wants.refused))
        else:
            self._refused.pop(at, None)
        old = self._workloads.pop(at, None)
        for gone in (old.keys if old else frozenset()) - keys:
            self._drop_user((at[0], gone), at[1])
        if not keys:
            return
        seen = seen_fingerprints(body)
        self._workloads[at] = _Workload(keys, {k: v for k, v in seen.items() if k in keys})
        for new in keys - (old.keys if old else frozenset()):
            users = self._users.setdefault((at[0], new), set())
            users.add(at[1])
            if len(users) == 1 and (at[0], new) not in self._digests:
                self._start(self._first_read(at[0], new, delayed=listed))

    def _drop_user(self, where: Where, uid: str) -> None:
        users = self._users.get(where)
        if users is None:
            return
        users.discard(uid)
        if not users:
            del self._users[where]
            self._forget(where)

    def _announce_refusal(self, kind: str, body: Mapping[str, Any], message: str) -> None:
        meta = body["metadata"]
        at: Where = (meta["namespace"], meta["uid"])
        if not message:
            self._refused.pop(at, None)
            return
        if self._refused.get(at) == message:
            return
        self._refused[at] = message
        log.warning("reload annotation refused", extra={"workload": f"{kind}/{at[0]}/{meta['name']}"})
        ref = ObjectRef(WORKLOAD_KINDS[kind][0], kind, at[0], meta["name"], at[1])
        self._start(self._events.post_event(ref, "Warning", c.REASON_INVALID_RELOAD, message))

    # ConfigMaps and Secrets ------------------------------------------------------------------

    def object_changed(self, kind: str, body: Mapping[str, Any], deleted: bool) -> None:
        meta = body["metadata"]
        name = meta["name"]
        where: Where = (meta["namespace"], configmap_key(name) if kind == "ConfigMap" else name)
        if where not in self._users:
            return
        if deleted:
            self._forget(where)
            return
        if kind == "Secret" and _managed(body):
            self._remember(where, MANAGED)
            return
        annotations = meta.get("annotations") or {}
        if str(annotations.get(c.RELOADER_IGNORE, "")).lower() == "true":
            self._forget(where)
            return
        digest = object_digest(self._key, where[0], kind, body)
        before = self._digests.get(where)
        self._remember(where, digest)
        if before == digest:
            return
        matched = str(annotations.get(c.RELOADER_MATCH, "")).lower() == "true"
        first_sight = before is None or before == MANAGED
        if first_sight and not self._missed_while_down(where, digest):
            return
        self._rollouts.object_changed(where[0], where[1], digest, matched=matched, first_sight=first_sight)

    def _missed_while_down(self, where: Where, digest: str) -> bool:
        """Some workload was restarted for another version of this object than it now holds."""
        for uid in self._users.get(where, ()):
            workload = self._workloads.get((where[0], uid))
            if workload is not None and workload.seen.get(where[1], digest) != digest:
                return True
        return False

    async def _first_read(self, namespace: str, key: str, delayed: bool) -> None:
        """The digest of a newly referenced object, if the watch has not delivered it."""
        if delayed:
            await asyncio.sleep(max(0.0, self._reads_from - time.monotonic()))
        if (namespace, key) not in self._users or (namespace, key) in self._digests:
            return
        configmap = key.startswith(CONFIGMAP_PREFIX)
        name = key[len(CONFIGMAP_PREFIX) :] if configmap else key
        async with self._reads:
            try:
                if configmap:
                    body = await self._kube.read_configmap(namespace, name)
                else:
                    body = await self._kube.read_secret(namespace, name)
            except KubeNotFound:
                return
            except VaultsyncError as exc:
                log.warning("referenced object not read", extra={"object": key, "detail": exc.message})
                return
        if (namespace, key) not in self._digests:
            self.object_changed("ConfigMap" if configmap else "Secret", body, deleted=False)

    # Tasks -----------------------------------------------------------------------------------

    def _start(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
