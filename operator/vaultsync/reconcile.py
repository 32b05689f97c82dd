"""One ExternalSecret, once: resolve the store → fetch → build data → write the Secret → status.

This is the whole product in one function. It never deletes or empties a
Secret because a provider failed (fail static), never writes when nothing
changed (no churn, no spurious rollouts), and reports every failure as the one
`Ready` condition with a reason and a message naming the field at fault.
The scheduler decides *when* this runs; the rollout module is told when a
Secret's data really changed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from vaultsync import constants as c
from vaultsync.cache import FetchCache
from vaultsync.constants import Reason
from vaultsync.errors import (
    AuthenticationError,
    InvalidSpec,
    KubeConflict,
    KubeNotFound,
    SecretImmutable,
    SecretNotFound,
    SecretTooLarge,
    StoreTimeout,
    TargetConflict,
    VaultsyncError,
)
from vaultsync.fingerprints import data_hmac, namespace_key
from vaultsync.kube import Body, Kube, ObjectRef
from vaultsync.metrics import SECRET_WRITES, SYNCS
from vaultsync.models import ExternalSecret
from vaultsync.providers.base import RemoteRef, RemoteValue
from vaultsync.renderer import TemplateRenderer
from vaultsync.stores import ResolvedStore, Stores
from vaultsync.targets import check_merge_target, created_by, every_key_gone, merged_secret, released_secret
from vaultsync.templating import build_data, remote_refs

log = logging.getLogger(__name__)

RotationListener = Callable[[str, str, str, ObjectRef], Awaitable[None]]


@dataclass(frozen=True)
class SyncResult:
    """What one reconcile did; the scheduler uses it to plan the next one."""

    reason: Reason
    message: str
    retry_after: float | None = None
    written: bool = False
    store_key: str | None = None
    remote_keys: frozenset[str] = field(default_factory=frozenset)

    @property
    def ok(self) -> bool:
        return self.reason is Reason.SYNCED


@dataclass(frozen=True)
class _Applied:
    written: bool
    rotated: bool


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        stores: Stores,
        cache: FetchCache,
        hmac_key: bytes,
        renderer: TemplateRenderer,
        on_rotated: RotationListener | None = None,
        sync_timeout: float = c.SYNC_TIMEOUT_SECONDS,
    ) -> None:
        self._sync_timeout = sync_timeout
        self._kube = kube
        self._stores = stores
        self._cache = cache
        self._renderer = renderer
        self._key = hmac_key
        self._on_rotated = on_rotated

    async def sync(
        self,
        es: ExternalSecret,
        *,
        max_age: float,
        next_refresh: float | None,
        force_token: str | None,
        trust_target: bool = False,
    ) -> SyncResult:
        """Brings the target Secret in line with the vault; never raises for vault or spec errors.

        `trust_target`: the Secret watch saw no change since the target was last checked, so
        when the data is what the status says was written, the Secret need not be read again.
        A Merge target carries no vaultsync labels, so the watch never sees it: always read.
        """
        trust_target = trust_target and es.spec.target.creation_policy != "Merge"
        resolved: ResolvedStore | None = None
        refs = remote_refs(es.spec)
        remote_keys = frozenset(r.key for r in refs)
        versions: dict[str, str] = {}
        fingerprint: str | None = None
        applied = _Applied(written=False, rotated=False)
        fetched: Mapping[RemoteRef, RemoteValue | VaultsyncError] = {}
        try:
            deadline = asyncio.timeout(self._sync_timeout)
            try:
                async with deadline:
                    resolved = await self._stores.for_namespace(es.namespace, es.spec.store_ref)
                    fetched = await self._cache.get(
                        resolved.cache_key,
                        resolved.provider,
                        resolved.client,
                        refs,
                        max_age,
                        context=resolved.context,
                        requested_by=f"{es.namespace}/{es.name}",
                    )
            except TimeoutError:
                if not deadline.expired():
                    raise
                raise StoreTimeout(self._timed_out(es, resolved)) from None
            data, versions = build_data(es.spec, fetched)
            template = es.spec.target.template
            if template is not None and template.data:
                data = await self._renderer.render(es.namespace, template, data)
            fingerprint = data_hmac(namespace_key(self._key, es.namespace), data)
            _check_size(data)
            _check_annotations(es, data, fingerprint)
            if not (trust_target and fingerprint == es.status.get("dataHMAC")):
                applied = await self._apply(es, data, fingerprint)
            result = SyncResult(
                Reason.SYNCED,
                f"Secret {es.target_name} is in sync with {resolved.context}",
                written=applied.written,
                store_key=resolved.cache_key,
                remote_keys=remote_keys,
            )
        except VaultsyncError as exc:
            if isinstance(exc, AuthenticationError) and resolved is not None:
                # The store's login was refused: its shared client is rebuilt (after a
                # backoff). A denied or missing key (PermissionDenied, SecretNotFound) is this
                # ExternalSecret's condition only and leaves the client to the others.
                await self._stores.invalidate(resolved)
            message = exc.message
            if isinstance(exc, SecretNotFound) and es.spec.target.deletion_policy == "Delete":
                if every_key_gone(fetched):
                    await self._remove_target(es)
                else:
                    message += "; deletionPolicy Delete keeps the Secret until every remote key is gone"
            result = SyncResult(
                exc.reason,
                message,
                retry_after=getattr(exc, "retry_after", None),
                store_key=resolved.cache_key if resolved else None,
                remote_keys=remote_keys,
            )
        SYNCS.labels(reason=result.reason.value).inc()
        if applied.rotated and fingerprint and self._on_rotated is not None:
            # Before the status and Event: a refused status write must not lose the restart.
            ref = ObjectRef(c.API_VERSION, c.KIND_EXTERNAL_SECRET, es.namespace, es.name, es.uid)
            await self._on_rotated(es.namespace, es.target_name, fingerprint, ref)
        await self._report(es, result, versions, fingerprint, next_refresh, force_token)
        return result

    def _timed_out(self, es: ExternalSecret, resolved: ResolvedStore | None) -> str:
        ref = es.spec.store_ref
        where = f"{es.namespace}/" if ref.kind == c.KIND_SECRET_STORE else ""
        store = str(resolved.context) if resolved else f"{ref.kind} {where}{ref.name}"
        step = "reading" if resolved else "logging in to"
        return (
            f"spec.storeRef.name: {store} did not answer within {self._sync_timeout:g} s "
            f"({step} the store; --sync-timeout); the Secret is left as it is"
        )

    async def still_exists(self, namespace: str, name: str, uid: str) -> bool:
        """The ExternalSecret is still there, as the same object (uid), per a fresh GET.

        Asked before writing for an object whose target Secret was deleted: after a watch gap
        the Secret may be gone because its Owner was deleted and garbage-collected, and
        writing it again would only feed the collector a loop. Any other error: assume yes.
        """
        try:
            body = await self._kube.read_custom(c.EXTERNAL_SECRETS, namespace, name)
        except KubeNotFound:
            return False
        except VaultsyncError:
            return True
        return bool(body["metadata"].get("uid") == uid)

    async def report_invalid(self, body: Mapping[str, Any], error: InvalidSpec) -> SyncResult:
        """An ExternalSecret whose spec cannot be parsed: say which field, touch nothing else."""
        meta = body["metadata"]
        result = SyncResult(Reason.INVALID_SPEC, error.message)
        old: Mapping[str, Any] = body.get("status") or {}
        status = desired_status(old, meta.get("generation", 0), result, {}, None, None)
        if _material(status) != _material(old):
            await self._kube.patch_status(c.EXTERNAL_SECRETS, meta["namespace"], meta["name"], status)
            ref = ObjectRef(
                c.API_VERSION, c.KIND_EXTERNAL_SECRET, meta["namespace"], meta["name"], meta["uid"]
            )
            await self._kube.post_event(ref, "Warning", result.reason.value, result.message)
        SYNCS.labels(reason=result.reason.value).inc()
        return result

    # Writing the Secret --------------------------------------------------------------------

    async def _apply(self, es: ExternalSecret, data: Mapping[str, bytes], fingerprint: str) -> _Applied:
        name, namespace = es.target_name, es.namespace
        policy = es.spec.target.creation_policy
        existing = await self._existing(es, data, fingerprint)
        if existing is None:
            return _Applied(written=True, rotated=False)

        if policy == "Merge":
            check_merge_target(existing, es.name, es.uid)
            desired = merged_secret(existing, _encode(data), _annotations(data, fingerprint), es.name)
        elif created_by(existing, es.name):
            desired = self._updated_secret(es, existing, data, fingerprint)
        else:
            raise TargetConflict(
                f"spec.target.name: Secret {namespace}/{name} exists and was not created by this "
                "ExternalSecret; vaultsync does not take over Secrets it did not create "
                "(creationPolicy: Merge writes into an existing Secret)"
            )
        if _same(existing, desired):
            return _Applied(written=False, rotated=False)
        rotated = (existing.get("data") or {}) != desired.get("data")
        if rotated and existing.get("immutable") and existing.get("type", "Opaque") == desired["type"]:
            # Kubernetes refuses it. ESO skips such a write silently; a stale Secret nobody
            # hears of is its users' complaint, so the condition says so (docs/api.md).
            raise SecretImmutable(
                f"spec.target.immutable: Secret {namespace}/{name} is immutable and keeps the data "
                "it was created with; the remote data changed: delete the Secret to have it "
                "written anew"
            )
        if rotated and policy != "Merge":
            # Recorded in the same write as the new data: a crash before the restart leaves it
            # on the Secret, and the next start resumes it (docs/rollouts.md). A Merge target
            # is someone else's Secret, unlabelled and so not watched: it gets no mark.
            annotations = {**(desired["metadata"].get("annotations") or {})}
            annotations[c.ANNOTATION_PENDING_RESTART] = fingerprint
            desired["metadata"] = {**desired["metadata"], "annotations": annotations}
        if existing.get("type", "Opaque") != desired["type"]:  # immutable: recreate (never Merge's)
            await self._kube.delete_secret(namespace, name, existing["metadata"]["uid"])
            desired["metadata"].pop("resourceVersion", None)
            desired["metadata"].pop("uid", None)
            await self._kube.create_secret(namespace, desired)
            SECRET_WRITES.labels(operation="recreate").inc()
        else:
            try:
                await self._kube.replace_secret(namespace, name, desired)
            except KubeConflict:
                raise KubeConflict(
                    f"Secret {namespace}/{name} changed while being written; retrying"
                ) from None
            SECRET_WRITES.labels(operation="update").inc()
        return _Applied(written=True, rotated=rotated)

    async def _existing(self, es: ExternalSecret, data: Mapping[str, bytes], fingerprint: str) -> Body | None:
        """The target Secret as it is, or None after creating it.

        A first sync creates without reading first (one request instead of two,
        which matters for ten thousand objects); an existing Secret answers 409.
        """
        name, namespace = es.target_name, es.namespace
        if es.spec.target.creation_policy != "Merge" and not es.status.get("dataHMAC"):
            try:
                await self._kube.create_secret(namespace, self._new_secret(es, data, fingerprint))
            except KubeConflict:
                pass
            else:
                SECRET_WRITES.labels(operation="create").inc()
                return None
        try:
            return await self._kube.read_secret(namespace, name)
        except KubeNotFound:
            if es.spec.target.creation_policy == "Merge":
                raise TargetConflict(
                    f"spec.target.creationPolicy: Merge only writes into an existing Secret, "
                    f"and Secret {namespace}/{name} does not exist"
                ) from None
        await self._kube.create_secret(namespace, self._new_secret(es, data, fingerprint))
        SECRET_WRITES.labels(operation="create").inc()
        return None

    def _new_secret(self, es: ExternalSecret, data: Mapping[str, bytes], fingerprint: str) -> Body:
        target = es.spec.target
        metadata: Body = {
            "name": es.target_name,
            "namespace": es.namespace,
            "labels": {**target.labels, **self._labels(es)},
            "annotations": {**target.annotations, **_annotations(data, fingerprint)},
        }
        if target.creation_policy == "Owner":
            metadata["ownerReferences"] = [
                {
                    "apiVersion": c.API_VERSION,
                    "kind": c.KIND_EXTERNAL_SECRET,
                    "name": es.name,
                    "uid": es.uid,
                    "controller": True,
                }
            ]
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": metadata,
            "type": target.type,
            "data": _encode(data),
            **({"immutable": True} if target.immutable else {}),
        }

    def _updated_secret(
        self, es: ExternalSecret, existing: Body, data: Mapping[str, bytes], fingerprint: str
    ) -> Body:
        """A Secret vaultsync created, as Owner or Orphan want it (Merge: `targets.merged_secret`)."""
        target = es.spec.target
        meta = dict(existing["metadata"])
        annotations = dict(meta.get("annotations") or {})
        if target.creation_policy == "Owner":
            meta["ownerReferences"] = self._new_secret(es, data, fingerprint)["metadata"]["ownerReferences"]
        meta["labels"] = {**(meta.get("labels") or {}), **target.labels, **self._labels(es)}
        meta["annotations"] = {
            **annotations,
            **target.annotations,
            **_annotations(data, fingerprint),
        }
        updated = {**existing, "metadata": meta, "type": target.type, "data": _encode(data)}
        if target.immutable:
            updated["immutable"] = True  # once set, Kubernetes keeps it: it cannot be unset
        return updated

    def _labels(self, es: ExternalSecret) -> dict[str, str]:
        return {c.LABEL_MANAGED_BY: c.MANAGED_BY_VALUE, c.LABEL_OWNER_NAME: es.name}

    async def _remove_target(self, es: ExternalSecret) -> None:
        """deletionPolicy Delete, every remote key gone: the Secret goes if vaultsync created it
        (and it is not a Merge target); Merge takes back only the keys it wrote."""
        try:
            existing = await self._kube.read_secret(es.namespace, es.target_name)
        except KubeNotFound:
            return
        if es.spec.target.creation_policy != "Merge":
            if created_by(existing, es.name):
                await self._kube.delete_secret(es.namespace, es.target_name, existing["metadata"]["uid"])
                SECRET_WRITES.labels(operation="delete").inc()
            return
        await self._release(existing, es.name)

    async def released(self, body: Mapping[str, Any]) -> None:
        """A deleted ExternalSecret with creationPolicy Merge takes back the keys it wrote; the
        Secret, its type, labels and other keys stay. (Owner targets go by garbage collection,
        Orphan targets stay.) Without a finalizer this is best effort: deleted while the
        operator is down, the keys stay, as in External Secrets Operator."""
        meta = body["metadata"]
        target = (body.get("spec") or {}).get("target") or {}
        if target.get("creationPolicy") != "Merge":
            return
        try:
            existing = await self._kube.read_secret(meta["namespace"], target.get("name") or meta["name"])
        except KubeNotFound:
            return
        await self._release(existing, meta["name"])

    async def _release(self, existing: Body, es_name: str) -> None:
        released = released_secret(existing, es_name)
        if released is not None:
            meta = existing["metadata"]
            await self._kube.replace_secret(meta["namespace"], meta["name"], released)
            SECRET_WRITES.labels(operation="update").inc()

    # Status and Events ---------------------------------------------------------------------

    async def _report(
        self,
        es: ExternalSecret,
        result: SyncResult,
        versions: Mapping[str, str],
        fingerprint: str | None,
        next_refresh: float | None,
        force_token: str | None,
    ) -> None:
        old: Mapping[str, Any] = dict(es.status)
        status = desired_status(old, es.generation, result, versions, fingerprint, force_token)
        if _material(status) != _material(old) or result.written:
            now = datetime.now(UTC)
            status["syncedAt"] = _timestamp(now) if result.ok else old.get("syncedAt")
            status["nextRefreshAt"] = (
                _timestamp(now + timedelta(seconds=next_refresh)) if result.ok and next_refresh else None
            )
            try:
                await self._kube.patch_status(c.EXTERNAL_SECRETS, es.namespace, es.name, status)
            except KubeNotFound:
                return  # deleted meanwhile
            es.status.clear()
            es.status.update({k: v for k, v in status.items() if v is not None})
        old_condition = _ready(old)
        changed = old_condition is None or (
            old_condition.get("reason"),
            old_condition.get("message"),
        ) != (result.reason.value, result.message)
        if result.written or (changed and not result.ok):
            ref = ObjectRef(c.API_VERSION, c.KIND_EXTERNAL_SECRET, es.namespace, es.name, es.uid)
            if result.ok:
                message = f"Secret {es.target_name} written from {len(versions) or 'the'} remote value(s)"
                await self._kube.post_event(ref, "Normal", result.reason.value, message)
            else:
                await self._kube.post_event(ref, "Warning", result.reason.value, result.message)
        log.log(
            # Writes and new failures are news; a refresh that changed nothing, or the same
            # failure retried, is not (ten thousand objects would drown the log).
            logging.INFO if result.written or (changed and not result.ok) else logging.DEBUG,
            "synced" if result.ok else "sync failed",
            extra={
                "externalSecret": f"{es.namespace}/{es.name}",
                "reason": result.reason.value,
                "detail": result.message,
                "written": result.written,
            },
        )


def desired_status(
    old: Mapping[str, Any],
    generation: int,
    result: SyncResult,
    versions: Mapping[str, str],
    fingerprint: str | None,
    force_token: str | None,
) -> dict[str, Any]:
    """The status after a reconcile; lastTransitionTime moves only when Ready flips."""
    state = "True" if result.ok else "False"
    previous = _ready(old)
    transition = (
        previous["lastTransitionTime"]
        if previous is not None and previous.get("status") == state and previous.get("lastTransitionTime")
        else _timestamp(datetime.now(UTC))
    )
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": [
            {
                "type": c.CONDITION_READY,
                "status": state,
                "reason": result.reason.value,
                "message": result.message,
                "lastTransitionTime": transition,
            }
        ],
        # Failures keep what was last synced: the Secret still holds that data.
        "remoteVersions": dict(versions) if result.ok else old.get("remoteVersions"),
        "dataHMAC": fingerprint if result.ok else old.get("dataHMAC"),
        "syncedAt": old.get("syncedAt"),
        "nextRefreshAt": old.get("nextRefreshAt"),
    }
    if force_token is not None or old.get("forceSyncHandled") is not None:
        status["forceSyncHandled"] = force_token if force_token is not None else old.get("forceSyncHandled")
    return status


def _material(status: Mapping[str, Any]) -> dict[str, Any]:
    """Status without the timestamps that move on every refresh."""
    return {k: v for k, v in status.items() if k not in ("syncedAt", "nextRefreshAt") and v is not None}


def _ready(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == c.CONDITION_READY:
            result: Mapping[str, Any] = condition
            return result
    return None


def _timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _encode(data: Mapping[str, bytes]) -> dict[str, str]:
    return {k: base64.b64encode(v).decode() for k, v in data.items()}


def _annotations(data: Mapping[str, bytes], fingerprint: str) -> dict[str, str]:
    return {
        c.ANNOTATION_DATA_FINGERPRINT: fingerprint,
        c.ANNOTATION_MANAGED_KEYS: ",".join(sorted(data)),
    }


def _same(existing: Body, desired: Body) -> bool:
    keys = ("type", "data", "immutable")
    if any((existing.get(k) or None) != (desired.get(k) or None) for k in keys):
        return False
    meta_keys = ("labels", "annotations", "ownerReferences")
    return all(existing["metadata"].get(k) == desired["metadata"].get(k) for k in meta_keys)


def _check_size(data: Mapping[str, bytes]) -> None:
    size = len(json.dumps(_encode(data)))
    if size > c.SECRET_SIZE_LIMIT - 16 * 1024:  # leave room for metadata
        raise SecretTooLarge(
            f"spec.target: the Secret's data would be {size} bytes encoded, over the "
            f"{c.SECRET_SIZE_LIMIT} byte limit of a Kubernetes Secret"
        )


def _check_annotations(es: ExternalSecret, data: Mapping[str, bytes], fingerprint: str) -> None:
    """Refused before any write: the API server refuses a Secret whose annotations exceed its
    limit, which would otherwise be met on every retry. The managed-keys annotation lists
    every key, so the key count is bounded too."""
    if len(data) > c.SECRET_MAX_KEYS:
        raise SecretTooLarge(
            f"spec.target: the Secret would have {len(data)} keys, over the limit of "
            f"{c.SECRET_MAX_KEYS} keys one ExternalSecret may write (check spec.dataFrom)"
        )
    annotations = {**es.spec.target.annotations, **_annotations(data, fingerprint)}
    size = sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items())
    if size > c.ANNOTATIONS_SIZE_LIMIT:
        raise SecretTooLarge(
            f"spec.target.annotations: the Secret's annotations would be {size} bytes with the "
            f"{c.ANNOTATION_MANAGED_KEYS} annotation listing its keys, over the API server's "
            f"{c.ANNOTATIONS_SIZE_LIMIT} byte limit"
        )
