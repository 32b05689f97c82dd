"""ClusterExternalSecret, decided without side effects: its model, which namespaces it
reaches, the ExternalSecret it wants in each, and whether an existing one is its own.

A ClusterExternalSecret is written by cluster admins, but what it fans out lands in
tenants' namespaces and is then an ordinary ExternalSecret: the reconciler resolves its
stores with that namespace's permissions, like any tenant's. This module only says what
to create, replace or delete; `clustersecrets.py` does it and writes the status.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import AfterValidator, Field, ValidationError, field_validator

from vaultsync import constants as c
from vaultsync.conditions import ready
from vaultsync.errors import InvalidSpec
from vaultsync.models import ExternalSecretSpec, LabelSelector, MetadataValue, Model
from vaultsync.providers.base import describe_validation_error
from vaultsync.schedule import refresh_interval
from vaultsync.targets import check_annotations, check_labels

Body = dict[str, Any]
NamespaceKey = tuple[str, str]  # namespace, ExternalSecret name

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _check_object_name(name: str) -> str:
    if name and (len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name)):
        raise ValueError("must be a valid object name: lowercase letters, digits, '-' and '.', at most 253")
    return name


class ExternalSecretMetadata(Model):
    labels: Annotated[dict[str, MetadataValue], AfterValidator(check_labels)] = Field(
        default_factory=dict, max_length=c.CLUSTER_ES_MAX_METADATA_ENTRIES
    )
    annotations: Annotated[dict[str, MetadataValue], AfterValidator(check_annotations)] = Field(
        default_factory=dict, max_length=c.CLUSTER_ES_MAX_METADATA_ENTRIES
    )


class ClusterExternalSecretSpec(Model):
    external_secret_spec: ExternalSecretSpec
    external_secret_name: Annotated[str, AfterValidator(_check_object_name)] = ""
    external_secret_metadata: ExternalSecretMetadata = Field(default_factory=ExternalSecretMetadata)
    namespace_selectors: list[LabelSelector] = Field(
        default_factory=list, max_length=c.CLUSTER_ES_MAX_SELECTORS
    )
    namespaces: list[Annotated[str, Field(min_length=1, max_length=63)]] = Field(
        default_factory=list, max_length=c.CLUSTER_ES_MAX_NAMESPACES
    )
    refresh_time: str = c.CLUSTER_ES_REFRESH_DEFAULT

    @field_validator("refresh_time")
    @classmethod
    def _is_duration(cls, value: str) -> str:
        refresh_interval(value)
        return value


@dataclass(frozen=True)
class ClusterExternalSecret:
    name: str
    uid: str
    generation: int
    spec: ClusterExternalSecretSpec
    raw_spec: Mapping[str, Any]  # spec.externalSecretSpec as written, copied into each child

    @property
    def child_name(self) -> str:
        return self.spec.external_secret_name or self.name

    @property
    def refresh_seconds(self) -> float:
        return max(refresh_interval(self.spec.refresh_time), c.CLUSTER_ES_REFRESH_MIN_SECONDS)


def parse_cluster_external_secret(body: Mapping[str, Any]) -> ClusterExternalSecret:
    """The model of a watch body; `InvalidSpec` names the first bad field (`spec.…`)."""
    meta = body.get("metadata") or {}
    raw = body.get("spec") or {}
    try:
        spec = ClusterExternalSecretSpec.model_validate(raw)
    except ValidationError as exc:
        raise InvalidSpec(describe_validation_error(exc, "spec")) from None
    return ClusterExternalSecret(
        meta.get("name", ""), meta.get("uid", ""), meta.get("generation", 0), spec, raw["externalSecretSpec"]
    )


@dataclass(frozen=True)
class Namespace:
    labels: Mapping[str, str]
    terminating: bool = False


def namespace_of(body: Mapping[str, Any]) -> Namespace:
    meta = body.get("metadata") or {}
    phase = (body.get("status") or {}).get("phase")
    return Namespace(
        dict(meta.get("labels") or {}), phase == "Terminating" or bool(meta.get("deletionTimestamp"))
    )


@dataclass(frozen=True)
class Selection:
    """Where the ExternalSecret goes, and the listed namespaces it cannot go to (with why)."""

    targets: frozenset[str]
    failed: dict[str, str] = field(default_factory=dict)


def select_namespaces(
    spec: ClusterExternalSecretSpec, namespaces: Mapping[str, Namespace], watched: frozenset[str] | None
) -> Selection:
    """The namespaces listed by name or matched by any selector (External Secrets Operator's
    union), that exist, are not being deleted, and are watched by this operator (`watched`:
    its --namespace list, None for every namespace). A namespace listed by name that cannot
    be reached is failed with the reason; one only matched by a selector is simply not chosen."""
    targets: set[str] = set()
    failed: dict[str, str] = {}
    for name in spec.namespaces:
        found = namespaces.get(name)
        if found is None:
            failed[name] = "namespace does not exist"
        elif found.terminating:
            continue
        elif watched is not None and name not in watched:
            failed[name] = "namespace is not watched by this operator (--namespace)"
        else:
            targets.add(name)
    for name, found in namespaces.items():
        if found.terminating or (watched is not None and name not in watched):
            continue
        if any(selector.matches(found.labels) for selector in spec.namespace_selectors):
            targets.add(name)
    return Selection(frozenset(targets), failed)


def owner_reference(ces: ClusterExternalSecret) -> Body:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND_CLUSTER_EXTERNAL_SECRET,
        "name": ces.name,
        "uid": ces.uid,
        "controller": True,
    }


def controller_uid(body: Mapping[str, Any]) -> str | None:
    """The uid of the ClusterExternalSecret that controls an ExternalSecret, if one does."""
    for ref in (body.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == c.KIND_CLUSTER_EXTERNAL_SECRET:
            uid: str = ref.get("uid", "")
            return uid
    return None


def desired_external_secret(ces: ClusterExternalSecret, namespace: str) -> Body:
    """The ExternalSecret the ClusterExternalSecret wants in `namespace`: its spec as written,
    its metadata, an ownerReference (garbage-collected with it) and the label that lets the
    operator find its children."""
    meta = ces.spec.external_secret_metadata
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND_EXTERNAL_SECRET,
        "metadata": {
            "name": ces.child_name,
            "namespace": namespace,
            "labels": {**meta.labels, c.LABEL_CLUSTER_EXTERNAL_SECRET: ces.uid},
            "annotations": dict(meta.annotations),
            "ownerReferences": [owner_reference(ces)],
        },
        "spec": dict(ces.raw_spec),
    }


def replacement(existing: Mapping[str, Any], desired: Body) -> Body | None:
    """The body that brings an owned ExternalSecret in line (None: it already is).

    The spec, the labels and the ownerReferences are the ClusterExternalSecret's; of the
    annotations, vaultsync's own (a tenant's `vaultsync.io/force-sync`) are kept, the others
    are the ClusterExternalSecret's."""
    meta = existing.get("metadata") or {}
    kept = {k: v for k, v in (meta.get("annotations") or {}).items() if k.startswith(f"{c.GROUP}/")}
    annotations = {**kept, **desired["metadata"]["annotations"]}
    wanted = desired["metadata"]
    if (
        existing.get("spec") == desired["spec"]
        and (meta.get("labels") or {}) == wanted["labels"]
        and (meta.get("annotations") or {}) == annotations
        and (meta.get("ownerReferences") or []) == wanted["ownerReferences"]
    ):
        return None
    body = {**desired, "metadata": {**wanted, "annotations": annotations}}
    body["metadata"]["resourceVersion"] = meta.get("resourceVersion", "")
    return body


def status(
    old: Mapping[str, Any], ces: ClusterExternalSecret, provisioned: set[str], failed: Mapping[str, str]
) -> Body:
    """The ClusterExternalSecret's status (External Secrets Operator's field names)."""
    failures = [
        {"namespace": ns, "reason": failed[ns][: c.CLUSTER_ES_MAX_REASON_LENGTH]} for ns in sorted(failed)
    ]
    if failures:
        condition = ready(
            old,
            False,
            c.REASON_NAMESPACES_FAILED,
            f"{len(failures)} namespace(s) failed, {len(provisioned)} provisioned (see failedNamespaces)",
        )
    else:
        condition = ready(
            old,
            True,
            c.Reason.SYNCED.value,
            f"ExternalSecret {ces.child_name} provisioned in {len(provisioned)} namespace(s)",
        )
    return {
        "observedGeneration": ces.generation,
        "externalSecretName": ces.child_name,
        "provisionedNamespaces": sorted(provisioned),
        "failedNamespaces": failures,
        "conditions": [condition],
    }


def invalid_status(old: Mapping[str, Any], generation: int, message: str) -> Body:
    """A spec that cannot be used: the Ready condition names the field; the ExternalSecrets
    already provisioned, and the lists naming them, stay as they are."""
    return {
        "observedGeneration": generation,
        "conditions": [ready(old, False, c.Reason.INVALID_SPEC.value, message)],
    }


def material(status: Mapping[str, Any]) -> Any:
    """A status without its timestamps, to tell whether it needs writing."""
    conditions = [
        {k: v for k, v in cond.items() if k != "lastTransitionTime"}
        for cond in status.get("conditions") or []
    ]
    return {**status, "conditions": conditions}
