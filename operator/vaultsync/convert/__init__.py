"""`vaultsync convert`'s logic: External Secrets Operator manifests in, vaultsync's out.

Pure (no cluster, no files): `convert` takes parsed documents and returns the vaultsync
objects and a finding for every field that did not move, or moved with a difference.
An object with a refused field is not returned at all: applied, it would write a different
Secret (or grant different access) than it did under ESO. `commands/convert.py` is the CLI.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vaultsync.constants import GROUP
from vaultsync.convert.externalsecret import convert_external_secret_spec
from vaultsync.convert.fields import Fields, collector
from vaultsync.convert.report import BLOCKING, Finding
from vaultsync.convert.stores import convert_store_spec
from vaultsync.schedule import MIN_REFRESH_SECONDS
from vaultsync.targets import check_annotations, check_labels

ESO_GROUP = "external-secrets.io"
ESO_VERSIONS = ("v1", "v1beta1")
API_VERSION = f"{GROUP}/v1alpha1"
KINDS = ("ExternalSecret", "SecretStore", "ClusterSecretStore", "ClusterExternalSecret")
# Written by the API server or kubectl, not by whoever wrote the manifest.
_SERVER_METADATA = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink")
_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


@dataclass(frozen=True)
class Document:
    """One parsed YAML/JSON document and where it came from (`file#index`)."""

    origin: str
    body: Any


@dataclass
class Conversion:
    objects: list[dict[str, Any]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    converted: int = 0
    refused: int = 0

    @property
    def complete(self) -> bool:
        """True when every field of every object moved (notes allowed)."""
        return not any(f.level in BLOCKING for f in self.findings)


def convert(documents: Iterable[Document], floor_seconds: float = MIN_REFRESH_SECONDS) -> Conversion:
    result = Conversion()
    for document in documents:
        for origin, body in _items(document):
            _convert_one(origin, body, result, floor_seconds)
    return result


def _items(document: Document) -> Iterable[tuple[str, Any]]:
    body = document.body
    if isinstance(body, Mapping) and body.get("kind") == "List" and isinstance(body.get("items"), list):
        for i, item in enumerate(body["items"]):
            yield f"{document.origin}.items[{i}]", item
    elif body is not None:
        yield document.origin, body


def _describe(origin: str, body: Mapping[str, Any]) -> str:
    found = body.get("metadata")
    meta: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    namespace = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{origin}: {body.get('kind', '?')} {namespace}{meta.get('name', '?')}"


def _convert_one(origin: str, body: Any, result: Conversion, floor_seconds: float) -> None:
    if not isinstance(body, Mapping):
        result.findings.append(Finding(origin, "", "refused", "not a Kubernetes object (a mapping)"))
        result.refused += 1
        return
    source = _describe(origin, body)
    findings: list[Finding] = []
    report = collector(source, findings)
    group, _, version = str(body.get("apiVersion", "")).rpartition("/")
    kind = body.get("kind")
    objects: list[dict[str, Any]] = []
    if group != ESO_GROUP or kind not in KINDS:
        report(
            "apiVersion", "refused", f"{body.get('apiVersion')} {kind} is not one of ESO's {', '.join(KINDS)}"
        )
    elif version not in ESO_VERSIONS:
        report("apiVersion", "refused", f"{version!r}: the converter reads {' and '.join(ESO_VERSIONS)}")
    else:
        top = Fields(body, "", report)
        top.get("apiVersion")
        top.get("kind")
        meta = _metadata(top)
        if top.has("status"):
            top.report("status", "note", "status is the controller's, not part of a manifest: not copied")
        spec = top.child("spec") or Fields({}, "spec", report)
        objects = _convert_kind(str(kind), meta, spec, floor_seconds)
        top.finish()
    result.findings.extend(findings)
    if any(f.level == "refused" for f in findings):
        result.refused += 1
    else:
        result.objects.extend(objects)
        result.converted += 1


def _metadata(top: Fields) -> dict[str, Any]:
    meta = top.child("metadata") or Fields({}, "metadata", top.report_to)
    out: dict[str, Any] = {"name": meta.text("name")}
    if meta.has("namespace"):
        out["namespace"] = meta.text("namespace")
    if meta.has("labels"):
        out["labels"] = dict(meta.get("labels"))
    annotations = dict(meta.get("annotations") or {})
    if annotations.pop(_LAST_APPLIED, None) is not None:
        meta.report(f"annotations[{_LAST_APPLIED}]", "note", "kubectl's record of the last apply: not copied")
    if annotations:
        out["annotations"] = {k: str(v) for k, v in annotations.items()}
    for key in _SERVER_METADATA:
        if meta.has(key):
            meta.get(key)
    for key in ("ownerReferences", "finalizers"):
        if meta.has(key):
            meta.report(key, "dropped", "set by whoever owns the ESO object; not carried to the new one")
    meta.finish()
    return out


def _convert_kind(
    kind: str, meta: dict[str, Any], spec: Fields, floor_seconds: float
) -> list[dict[str, Any]]:
    if kind == "ExternalSecret":
        return [_object("ExternalSecret", meta, convert_external_secret_spec(spec, meta, floor_seconds))]
    if kind in ("SecretStore", "ClusterSecretStore"):
        cluster = kind == "ClusterSecretStore"
        return [_object(kind, meta, convert_store_spec(spec, cluster, meta.get("namespace", "")))]
    return _cluster_external_secret(meta, spec, floor_seconds)


def _object(kind: str, meta: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": meta, "spec": spec}


def _cluster_external_secret(
    meta: dict[str, Any], spec: Fields, floor_seconds: float
) -> list[dict[str, Any]]:
    """ESO's ClusterExternalSecret to vaultsync's: the same fields, its ExternalSecret spec converted."""
    out: dict[str, Any] = {}
    if spec.has("externalSecretName"):
        out["externalSecretName"] = spec.text("externalSecretName")
    selectors = [dict(s) for s in spec.get("namespaceSelectors") or []]
    if spec.has("namespaceSelector"):
        selectors.append(dict(spec.get("namespaceSelector")))
        spec.report(
            "namespaceSelector", "note", "ESO's deprecated singular selector: written into namespaceSelectors"
        )
    if selectors:
        out["namespaceSelectors"] = selectors
    namespaces = [str(n) for n in spec.get("namespaces") or []]
    if namespaces:
        out["namespaces"] = namespaces
    if not selectors and not namespaces:
        spec.report(
            "namespaces", "note", "no namespaces and no selectors: it provisions nothing until given some"
        )
    if spec.has("refreshTime"):
        out["refreshTime"] = spec.text("refreshTime")
    es_meta = spec.child("externalSecretMetadata")
    if es_meta is not None:
        metadata = _es_metadata(es_meta)
        if metadata:
            out["externalSecretMetadata"] = metadata
    template = spec.child("externalSecretSpec") or Fields({}, spec.at("externalSecretSpec"), spec.report_to)
    child_meta: dict[str, Any] = {"name": out.get("externalSecretName") or meta["name"]}
    child_meta.update(out.get("externalSecretMetadata") or {})
    out["externalSecretSpec"] = convert_external_secret_spec(template, child_meta, floor_seconds)
    spec.finish()
    return [_object("ClusterExternalSecret", meta, out)]


def _es_metadata(fields: Fields) -> dict[str, Any]:
    """`externalSecretMetadata`, without the keys vaultsync refuses on its ExternalSecrets."""
    out: dict[str, Any] = {}
    for key, check in (("labels", check_labels), ("annotations", check_annotations)):
        kept: dict[str, str] = {}
        for name, value in dict(fields.get(key) or {}).items():
            try:
                check({name: str(value)})
            except ValueError as exc:
                fields.report(f"{key}[{name}]", "dropped", str(exc))
                continue
            kept[name] = str(value)
        if kept:
            out[key] = kept
    fields.finish()
    return out
