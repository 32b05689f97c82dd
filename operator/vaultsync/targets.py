"""Which Secrets an ExternalSecret may write, and what Merge and deletion may touch.

A tenant writes the ExternalSecret; the operator writes the Secret with its own, wider
rights. Unchecked, that makes the operator a confused deputy: a Secret of type
`kubernetes.io/service-account-token` makes the cluster mint a non-expiring token, a
`helm.sh/release.v1` Secret (or one named `sh.helm.release.v1.*` labelled `owner=helm`)
is a forged Helm release, a `kubernetes.io/service-account.name` annotation changes what a
Secret is, and `vaultsync.io/*` labels forge vaultsync's own ownership marks. `Merge` into
someone else's Secret must write only its own keys and its own `vaultsync.io/*`
annotations, never change that Secret's type, labels or other annotations, and never
delete it. The CRD's CEL rules say the same at `kubectl apply`; these checks are the second
line for clusters that skipped them. Every function here is pure, so the rules are tested
without a server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from vaultsync import constants as c
from vaultsync.errors import SecretNotFound, TargetConflict

Body = dict[str, Any]

_WHY_REFUSED = {
    "kubernetes.io/service-account-token": "the cluster would mint a long-lived ServiceAccount token into it",
    "bootstrap.kubernetes.io/token": "it is a node-bootstrap credential the API server authenticates",
    "helm.sh/release.v1": "it is a Helm release record, which Helm trusts as its own",
}


def _in_domain(key: str, domains: tuple[str, ...]) -> bool:
    """`key` is `<domain>/...` or `<sub>.<domain>/...` for one of `domains`."""
    prefix, slash, _ = key.partition("/")
    return bool(slash) and any(prefix == d or prefix.endswith(f".{d}") for d in domains)


def refused_type(secret_type: str) -> str | None:
    """Why a Secret of this type may not be a target, or None when it may."""
    if secret_type in _WHY_REFUSED:
        return _WHY_REFUSED[secret_type]
    if secret_type not in c.BUILTIN_SECRET_TYPES and _in_domain(secret_type, c.RESERVED_TYPE_DOMAINS):
        return (
            "types in the kubernetes.io, k8s.io and helm.sh domains belong to Kubernetes and Helm; "
            f"of those only {', '.join(c.BUILTIN_SECRET_TYPES[1:])} may be written"
        )
    return None


def check_type(secret_type: str) -> str:
    why = refused_type(secret_type)
    if why is not None:
        raise ValueError(f"type {secret_type!r} is refused: {why}")
    return secret_type


def reserved_metadata_key(key: str) -> bool:
    """A label or annotation key that belongs to Kubernetes or to vaultsync itself."""
    if key == c.LABEL_MANAGED_BY:
        return True
    if key.startswith(c.USER_METADATA_PREFIX):
        return False
    return _in_domain(key, c.RESERVED_METADATA_DOMAINS)


_RESERVED_RULE = (
    "keys in the kubernetes.io, k8s.io and vaultsync.io domains (and app.kubernetes.io/managed-by) "
    "belong to Kubernetes and vaultsync"
)


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    for key in sorted(labels):
        if reserved_metadata_key(key):
            raise ValueError(f"label {key!r} is refused: {_RESERVED_RULE}")
    owner, helm = c.HELM_OWNER_LABEL
    if labels.get(owner) == helm:
        raise ValueError(f"label {owner}={helm} is refused: Helm reads such Secrets as its release records")
    return labels


def check_annotations(annotations: dict[str, str]) -> dict[str, str]:
    for key in sorted(annotations):
        if reserved_metadata_key(key):
            raise ValueError(f"annotation {key!r} is refused: {_RESERVED_RULE}")
    return annotations


def check_name(name: str) -> str:
    if name.startswith(c.HELM_RELEASE_NAME_PREFIX):
        raise ValueError(
            f"names starting with {c.HELM_RELEASE_NAME_PREFIX!r} are refused: Helm reads them as "
            "its release records"
        )
    return name


# Ownership of an existing Secret -------------------------------------------------------------


def _labels(secret: Mapping[str, Any]) -> Mapping[str, str]:
    labels: Mapping[str, str] = secret["metadata"].get("labels") or {}
    return labels


def _annotations(secret: Mapping[str, Any]) -> Mapping[str, str]:
    annotations: Mapping[str, str] = secret["metadata"].get("annotations") or {}
    return annotations


def created_by(secret: Mapping[str, Any], es_name: str) -> bool:
    """vaultsync created this Secret for this ExternalSecret (Merge never writes these labels)."""
    labels = _labels(secret)
    return (
        labels.get(c.LABEL_MANAGED_BY) == c.MANAGED_BY_VALUE
        and labels.get(c.LABEL_OWNER_NAME) == es_name
        and c.ANNOTATION_MERGED_BY not in _annotations(secret)
    )


def _merged_by(secret: Mapping[str, Any], es_name: str) -> bool:
    return _annotations(secret).get(c.ANNOTATION_MERGED_BY) == es_name


def managed_keys(secret: Mapping[str, Any]) -> set[str]:
    """The keys a Secret's managed-keys annotation says vaultsync wrote."""
    return set(filter(None, _annotations(secret).get(c.ANNOTATION_MANAGED_KEYS, "").split(",")))


def managed_keys_value(keys: Iterable[str]) -> str:
    """The managed-keys annotation's value for `keys`."""
    return ",".join(sorted(keys))


def check_merge_target(secret: Mapping[str, Any], es_name: str, es_uid: str) -> None:
    """creationPolicy Merge may write into `secret`, or `TargetConflict` says why not.

    It may when vaultsync created the Secret for this ExternalSecret, or when the Secret
    is Opaque, no other ExternalSecret writes into it and no other controller owns it.
    """
    if created_by(secret, es_name):
        return
    meta = secret["metadata"]
    where = f"Secret {meta.get('namespace')}/{meta.get('name')}"
    field = "spec.target.creationPolicy"
    labels, annotations = _labels(secret), _annotations(secret)
    other = annotations.get(c.ANNOTATION_MERGED_BY) or (
        labels.get(c.LABEL_OWNER_NAME) if labels.get(c.LABEL_MANAGED_BY) == c.MANAGED_BY_VALUE else None
    )
    if other not in (None, es_name):
        raise TargetConflict(f"spec.target.name: {where} is managed by ExternalSecret {other!r}")
    secret_type = secret.get("type") or "Opaque"
    if secret_type != c.MERGEABLE_SECRET_TYPE:
        why = refused_type(secret_type) or "its keys belong to whoever issued it"
        raise TargetConflict(
            f"{field}: Merge writes only into {c.MERGEABLE_SECRET_TYPE} Secrets, and {where} is of "
            f"type {secret_type!r} ({why})"
        )
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller") and ref.get("uid") != es_uid:
            raise TargetConflict(
                f"{field}: {where} is controlled by {ref.get('kind')} {ref.get('name')!r}; Merge does "
                "not write into a Secret another controller manages"
            )


def merged_secret(
    secret: Mapping[str, Any], encoded: Mapping[str, str], marks: Mapping[str, str], es_name: str
) -> Body:
    """`secret` with this ExternalSecret's keys and `vaultsync.io/*` marks, nothing else changed.

    Keys it wrote before and no longer writes are removed; keys of others are kept.
    `marks` are the fingerprint and managed-keys annotations.
    """
    ours = created_by(secret, es_name)
    previous = managed_keys(secret) if ours or _merged_by(secret, es_name) else set()
    data = {k: v for k, v in (secret.get("data") or {}).items() if k not in previous}
    data.update(encoded)
    annotations = {**_annotations(secret), **marks}
    if not ours:
        annotations[c.ANNOTATION_MERGED_BY] = es_name
    return {**secret, "metadata": {**secret["metadata"], "annotations": annotations}, "data": data}


def released_secret(secret: Mapping[str, Any], es_name: str) -> Body | None:
    """`secret` without this ExternalSecret's merged keys and marks; None if it holds none."""
    if not (_merged_by(secret, es_name) or created_by(secret, es_name)):
        return None
    ours = managed_keys(secret)
    data = {k: v for k, v in (secret.get("data") or {}).items() if k not in ours}
    marks = (
        c.ANNOTATION_MANAGED_KEYS,
        c.ANNOTATION_DATA_FINGERPRINT,
        c.ANNOTATION_MERGED_BY,
        c.ANNOTATION_PENDING_RESTART,
    )
    annotations = {k: v for k, v in _annotations(secret).items() if k not in marks}
    return {**secret, "metadata": {**secret["metadata"], "annotations": annotations}, "data": data}


def every_key_gone(results: Mapping[Any, object]) -> bool:
    """deletionPolicy Delete acts only when every remote key answered not-found, as in
    External Secrets Operator: one missing key among others is as likely a typo, a wrong
    mount or a missing permission as a deletion."""
    return bool(results) and all(isinstance(r, SecretNotFound) for r in results.values())
