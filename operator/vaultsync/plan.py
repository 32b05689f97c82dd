"""What one reconcile should write, decided without writing anything.

A reconcile has three outputs: the target Secret, the ExternalSecret's status and
an Event. Deciding them is pure logic over three inputs (the values fetched, the
Secret as it is, the spec), and every branch of it (first sync, unchanged, changed,
type change, the creation and deletion policies) is tested here without a server.
`reconcile.py` then applies the plan in an order that survives a crash at any
point (see `Reconciler.sync`). The planners raise the same errors a write would
(`TargetConflict`), never touch the API and never read the clock: `now` is given.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from vaultsync import constants as c
from vaultsync.conditions import ready, ready_condition, timestamp
from vaultsync.constants import Reason
from vaultsync.errors import SecretImmutable, SecretTooLarge, TargetConflict
from vaultsync.models import ExternalSecret
from vaultsync.targets import (
    check_merge_target,
    created_by,
    managed_keys_value,
    merged_secret,
    released_secret,
)

Body = dict[str, Any]


@dataclass(frozen=True)
class SyncResult:
    """What one reconcile did; the scheduler uses it to plan the next one.

    `status`: the ExternalSecret's status after this reconcile as the API server holds it
    (None when unchanged), returned rather than written into the caller's object.
    """

    reason: Reason
    message: str
    retry_after: float | None = None
    written: bool = False
    store_key: str | None = None
    remote_keys: frozenset[str] = field(default_factory=frozenset)
    # (store key, remote key) read from stores other than `store_key` (entries' sourceRef).
    other_sources: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    status: Mapping[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.reason is Reason.SYNCED


# The target Secret ----------------------------------------------------------------------

SecretAction = Literal["none", "create", "update", "recreate"]


@dataclass(frozen=True)
class SecretWrite:
    """The one write the target needs. `recreate`: its type changed (immutable), so delete
    `existing_uid` and create `body`. `rotated`: the data of an existing Secret changes."""

    action: SecretAction
    body: Body | None = None
    rotated: bool = False
    existing_uid: str | None = None


def plan_write(
    es: ExternalSecret, existing: Mapping[str, Any] | None, data: Mapping[str, bytes], fingerprint: str
) -> SecretWrite:
    """The write that makes `existing` (None: there is no Secret) hold `data` as the spec wants.

    Raises `TargetConflict` when the spec may not write there: a Secret vaultsync did not
    create (Owner, Orphan), a Merge target that is missing or not mergeable.
    """
    name, namespace = es.target_name, es.namespace
    policy = es.spec.target.creation_policy
    if existing is None:
        if policy == "Merge":
            raise TargetConflict(
                f"spec.target.creationPolicy: Merge only writes into an existing Secret, "
                f"and Secret {namespace}/{name} does not exist"
            )
        return SecretWrite("create", new_secret(es, data, fingerprint))
    if policy == "Merge":
        check_merge_target(existing, es.name, es.uid)
        desired = merged_secret(existing, encode(data), secret_marks(data, fingerprint), es.name)
    elif created_by(existing, es.name):
        desired = _updated_secret(es, existing, data, fingerprint)
    else:
        raise TargetConflict(
            f"spec.target.name: Secret {namespace}/{name} exists and was not created by this "
            "ExternalSecret; vaultsync does not take over Secrets it did not create "
            "(creationPolicy: Merge writes into an existing Secret)"
        )
    if _same(existing, desired):
        return SecretWrite("none")
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
        meta = {k: v for k, v in desired["metadata"].items() if k not in ("resourceVersion", "uid")}
        return SecretWrite(
            "recreate", {**desired, "metadata": meta}, rotated, existing_uid=existing["metadata"]["uid"]
        )
    return SecretWrite("update", desired, rotated)


def new_secret(es: ExternalSecret, data: Mapping[str, bytes], fingerprint: str) -> Body:
    target = es.spec.target
    metadata: Body = {
        "name": es.target_name,
        "namespace": es.namespace,
        "labels": {**target.secret_labels, **_labels(es)},
        "annotations": {**target.secret_annotations, **secret_marks(data, fingerprint)},
    }
    if target.creation_policy == "Owner":
        metadata["ownerReferences"] = [_owner_reference(es)]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": target.secret_type,
        "data": encode(data),
        **({"immutable": True} if target.immutable else {}),
    }


def _updated_secret(
    es: ExternalSecret, existing: Mapping[str, Any], data: Mapping[str, bytes], fingerprint: str
) -> Body:
    """A Secret vaultsync created, as Owner or Orphan want it (Merge: `targets.merged_secret`)."""
    target = es.spec.target
    meta = dict(existing["metadata"])
    if target.creation_policy == "Owner":
        meta["ownerReferences"] = [_owner_reference(es)]
    meta["labels"] = {**(meta.get("labels") or {}), **target.secret_labels, **_labels(es)}
    meta["annotations"] = {
        **(meta.get("annotations") or {}),
        **target.secret_annotations,
        **secret_marks(data, fingerprint),
    }
    updated = {**existing, "metadata": meta, "type": target.secret_type, "data": encode(data)}
    if target.immutable:
        updated["immutable"] = True  # once set, Kubernetes keeps it: it cannot be unset
    return updated


def _owner_reference(es: ExternalSecret) -> Body:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND_EXTERNAL_SECRET,
        "name": es.name,
        "uid": es.uid,
        "controller": True,
    }


def _labels(es: ExternalSecret) -> dict[str, str]:
    return {c.LABEL_MANAGED_BY: c.MANAGED_BY_VALUE, c.LABEL_OWNER_NAME: es.name}


def encode(data: Mapping[str, bytes]) -> dict[str, str]:
    return {k: base64.b64encode(v).decode() for k, v in data.items()}


def secret_marks(data: Mapping[str, bytes], fingerprint: str) -> dict[str, str]:
    """The annotations vaultsync writes with the data: its fingerprint and which keys are ours."""
    return {
        c.ANNOTATION_DATA_FINGERPRINT: fingerprint,
        c.ANNOTATION_MANAGED_KEYS: managed_keys_value(data),
    }


def _same(existing: Mapping[str, Any], desired: Body) -> bool:
    keys = ("type", "data", "immutable")
    if any((existing.get(k) or None) != (desired.get(k) or None) for k in keys):
        return False
    meta_keys = ("labels", "annotations", "ownerReferences")
    return all(existing["metadata"].get(k) == desired["metadata"].get(k) for k in meta_keys)


@dataclass(frozen=True)
class SecretRemoval:
    """What deletionPolicy Delete (every remote key gone) or a deleted Merge ExternalSecret
    does to the target: `delete` the Secret (uid precondition), `update` it to `body`."""

    action: Literal["none", "delete", "update"]
    body: Body | None = None
    uid: str | None = None


def plan_removal(es_name: str, creation_policy: str, existing: Mapping[str, Any] | None) -> SecretRemoval:
    """A Secret vaultsync created (not a Merge target) goes; Merge takes back only its keys."""
    if existing is None:
        return SecretRemoval("none")
    if creation_policy != "Merge":
        if created_by(existing, es_name):
            return SecretRemoval("delete", uid=existing["metadata"]["uid"])
        return SecretRemoval("none")
    released = released_secret(existing, es_name)
    return SecretRemoval("none") if released is None else SecretRemoval("update", released)


def check_bounds(es: ExternalSecret, data: Mapping[str, bytes], fingerprint: str) -> None:
    """Refused before any write: a Secret the API server would refuse on every retry."""
    _check_size(data)
    _check_annotations(es, data, fingerprint)


def _check_size(data: Mapping[str, bytes]) -> None:
    size = len(json.dumps(encode(data)))
    if size > c.SECRET_SIZE_LIMIT - 16 * 1024:  # leave room for metadata
        raise SecretTooLarge(
            f"spec.target: the Secret's data would be {size} bytes encoded, over the "
            f"{c.SECRET_SIZE_LIMIT} byte limit of a Kubernetes Secret"
        )


def _check_annotations(es: ExternalSecret, data: Mapping[str, bytes], fingerprint: str) -> None:
    """The API server refuses a Secret whose annotations exceed its limit, which would otherwise
    be met on every retry. The managed-keys annotation lists every key, so the key count is
    bounded too."""
    if len(data) > c.SECRET_MAX_KEYS:
        raise SecretTooLarge(
            f"spec.target: the Secret would have {len(data)} keys, over the limit of "
            f"{c.SECRET_MAX_KEYS} keys one ExternalSecret may write (check spec.dataFrom)"
        )
    annotations = {**es.spec.target.secret_annotations, **secret_marks(data, fingerprint)}
    size = sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items())
    if size > c.ANNOTATIONS_SIZE_LIMIT:
        raise SecretTooLarge(
            f"spec.target.annotations: the Secret's annotations would be {size} bytes with the "
            f"{c.ANNOTATION_MANAGED_KEYS} annotation listing its keys, over the API server's "
            f"{c.ANNOTATIONS_SIZE_LIMIT} byte limit"
        )


# Status and Event -----------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Report:
    """`status`: the status to write (None: nothing material changed, write nothing);
    `event`: the Event to post, if any; `news`: worth an INFO log line (a write or a new
    failure; a refresh that changed nothing, or the same failure retried, is not)."""

    status: dict[str, Any] | None
    event: Event | None
    news: bool


def plan_report(
    old: Mapping[str, Any],
    generation: int,
    result: SyncResult,
    versions: Mapping[str, str],
    fingerprint: str | None,
    force_token: str | None,
    next_refresh: float | None,
    target_name: str,
    now: datetime,
) -> Report:
    """The status and Event after a sync; timestamps move only when something is written."""
    desired = desired_status(old, generation, result, versions, fingerprint, force_token, now)
    status: dict[str, Any] | None = None
    if material(desired) != material(old) or result.written:
        status = desired
        status["syncedAt"] = timestamp(now) if result.ok else old.get("syncedAt")
        status["nextRefreshAt"] = (
            timestamp(now + timedelta(seconds=next_refresh)) if result.ok and next_refresh else None
        )
    old_condition = ready_condition(old)
    changed = old_condition is None or (
        old_condition.get("reason"),
        old_condition.get("message"),
    ) != (result.reason.value, result.message)
    event: Event | None = None
    if result.written:
        message = f"Secret {target_name} written from {len(versions) or 'the'} remote value(s)"
        event = Event("Normal", result.reason.value, message)
    elif changed and not result.ok:
        event = Event("Warning", result.reason.value, result.message)
    return Report(status, event, news=result.written or (changed and not result.ok))


def plan_invalid(old: Mapping[str, Any], generation: int, result: SyncResult, now: datetime) -> Report:
    """An ExternalSecret whose spec cannot be parsed: its status and a Warning, once."""
    status = desired_status(old, generation, result, {}, None, None, now)
    if material(status) == material(old):
        return Report(None, None, news=False)
    return Report(status, Event("Warning", result.reason.value, result.message), news=True)


def desired_status(
    old: Mapping[str, Any],
    generation: int,
    result: SyncResult,
    versions: Mapping[str, str],
    fingerprint: str | None,
    force_token: str | None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The status after a reconcile; lastTransitionTime moves only when Ready flips."""
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": [ready(old, result.ok, result.reason.value, result.message, now)],
        # Failures keep what was last synced: the Secret still holds that data.
        "remoteVersions": dict(versions) if result.ok else old.get("remoteVersions"),
        "dataHMAC": fingerprint if result.ok else old.get("dataHMAC"),
        "syncedAt": old.get("syncedAt"),
        "nextRefreshAt": old.get("nextRefreshAt"),
    }
    if force_token is not None or old.get("forceSyncHandled") is not None:
        status["forceSyncHandled"] = force_token if force_token is not None else old.get("forceSyncHandled")
    return status


def material(status: Mapping[str, Any]) -> dict[str, Any]:
    """Status without the timestamps that move on every refresh."""
    return {k: v for k, v in status.items() if k not in ("syncedAt", "nextRefreshAt") and v is not None}


def stored(status: Mapping[str, Any]) -> dict[str, Any]:
    """A status as the API server keeps it after a merge patch: null fields removed."""
    return {k: v for k, v in status.items() if v is not None}
