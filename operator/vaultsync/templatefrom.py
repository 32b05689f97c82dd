"""Templates kept in ConfigMaps and Secrets (ESO's `templateFrom`), and how every template's
output joins the Secret: its data, labels and annotations.

External Secrets Operator lets a team keep one template in a ConfigMap and use it from many
ExternalSecrets. The objects are read with the operator's rights, which reach every
namespace, so a template source is only ever looked for in the ExternalSecret's own
namespace (`models.ExternalSecret` refuses any other), a Secret that is a credential of the
cluster is no template, and what is read is bounded before any rendering. The texts then
render in the render workers like `template.data` (`renderer.py`), under the same limits, and
what they produce for the Secret's labels and annotations gets `target`'s refusals.

Pure: the reconciler reads the objects and hands them in, so the rules are tested
without a server.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vaultsync.constants import TEMPLATE_FROM_MAX_TOTAL_BYTES
from vaultsync.errors import TemplateError
from vaultsync.keymapping import SECRET_KEY_RULE, is_valid_secret_key
from vaultsync.models import (
    ExternalSecret,
    TemplateMetadata,
    TemplateRef,
    TemplateSpec,
)
from vaultsync.properties import masked_name
from vaultsync.targets import check_annotations, check_labels, refused_type

FIELD = "spec.target.template.templateFrom"
_ABSENT = object()
# Kubernetes' rules for a label or annotation key (an optional DNS-subdomain prefix and a name)
# and for a label value.
_LABEL_KEY = re.compile(
    r"([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
)
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?")
Objects = Mapping[tuple[str, str], Mapping[str, Any] | None]  # (kind, name) → body, None: absent


@dataclass(frozen=True)
class Sources:
    """What one ExternalSecret's template renders: id → template text, in the order ESO
    applies them (templateFrom entries, `data`, then `metadata`), each id's spec field when it is not a
    `template.data` key, the ids whose output is a YAML map, and the Secret key of the others."""

    texts: dict[str, str] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)
    maps: frozenset[str] = frozenset()
    keys: dict[str, str] = field(default_factory=dict)
    # Where each id's output goes when not into the data: "labels" or "annotations".
    targets: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Rendered:
    """The Secret's data, and the labels and annotations its template rendered."""

    data: dict[str, bytes]
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


def template_objects(template: TemplateSpec) -> list[tuple[str, str]]:
    """The (kind, name) of every ConfigMap and Secret the template reads, once each."""
    found = [(kind, ref.name) for entry in template.template_from for kind, ref in entry.refs()]
    return list(dict.fromkeys(found))


def collect(template: TemplateSpec, objects: Objects, namespace: str) -> Sources:
    """The template texts, from the spec and from `objects`; `TemplateError` names the field."""
    texts: dict[str, str] = {}
    fields: dict[str, str] = {}
    maps: set[str] = set()
    keys: dict[str, str] = {}
    targets: dict[str, str] = {}
    read = 0
    for i, entry in enumerate(template.template_from):
        first = len(texts)
        for kind, ref in entry.refs():
            where = f"{FIELD}[{i}].{'configMap' if kind == 'ConfigMap' else 'secret'}"
            values = _values(kind, ref, objects.get((kind, ref.name)), f"{where}.name", namespace)
            for j, item in enumerate(ref.items):
                text = values.get(item.key, _ABSENT)
                if not isinstance(text, str):
                    what = "has no key" if text is _ABSENT else "holds no UTF-8 text in key"
                    raise TemplateError(
                        f"{where}.items[{j}].key: {kind} {namespace}/{ref.name} {what} {item.key!r}"
                    )
                ident = f"{where}.items[{j}]"
                texts[ident], fields[ident] = text, ident
                read += len(text.encode("utf-8", errors="surrogatepass"))
                if item.template_as == "KeysAndValues":
                    maps.add(ident)
                else:
                    keys[ident] = item.key
        if entry.literal is not None:
            ident = f"{FIELD}[{i}].literal"
            texts[ident], fields[ident] = entry.literal, ident
            maps.add(ident)
        if entry.target != "Data":
            targets.update(dict.fromkeys(list(texts)[first:], entry.target.lower()))
    if read > TEMPLATE_FROM_MAX_TOTAL_BYTES:
        raise TemplateError(
            f"{FIELD}: the templates read from ConfigMaps and Secrets are {read} bytes, over the "
            f"limit of {TEMPLATE_FROM_MAX_TOTAL_BYTES}"
        )
    for key, source in template.data.items():
        texts[key], keys[key] = source, key
    for where, entries in (
        ("labels", template.metadata.labels),
        ("annotations", template.metadata.annotations),
    ):
        for key, source in entries.items():
            ident = f"spec.target.template.metadata.{where}.{key}"
            texts[ident], fields[ident], keys[ident], targets[ident] = source, ident, key, where
    return Sources(texts, fields, frozenset(maps), keys, targets)


def _values(
    kind: str, ref: TemplateRef, body: Mapping[str, Any] | None, where: str, namespace: str
) -> dict[str, str | None]:
    """The keys of a ConfigMap's `data`, or of a Secret's `data` decoded (None: not text)."""
    if body is None:
        raise TemplateError(f"{where}: {kind} {namespace}/{ref.name} does not exist")
    if kind == "ConfigMap":
        return {str(k): str(v) for k, v in (body.get("data") or {}).items()}
    secret_type = body.get("type") or "Opaque"
    if (why := refused_type(secret_type)) is not None:
        raise TemplateError(
            f"{where}: Secret {namespace}/{ref.name} is of type {secret_type!r}, which is no "
            f"template source ({why})"
        )
    out: dict[str, str | None] = {}
    for k, v in (body.get("data") or {}).items():
        try:
            out[str(k)] = base64.b64decode(v).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            out[str(k)] = None
    return out


def assemble(
    template: TemplateSpec, sources: Sources, rendered: Mapping[str, Any], fetched: Mapping[str, bytes]
) -> Rendered:
    """The Secret's data: the fetched data under `mergePolicy: Merge` or when the template
    renders no data (only metadata, say), else nothing; then each rendered template in order,
    a later one overriding an earlier one's keys. Rendered labels and annotations apart, each
    checked as `target.labels` / `target.annotations` are."""
    renders_data = bool(template.data or any(e.target == "Data" for e in template.template_from))
    out = Rendered(dict(fetched) if template.merge_policy == "Merge" or not renders_data else {})
    for ident in sources.texts:
        output = rendered[ident]
        where = sources.targets.get(ident, "data")
        pairs = output.items() if ident in sources.maps else [(sources.keys[ident], output)]
        for key, value in pairs:
            if where == "data":
                _check_key(sources.fields.get(ident, ident), key)
                out.data[key] = (
                    value if isinstance(value, bytes) else value.encode("utf-8", errors="surrogateescape")
                )
            else:
                text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
                _metadata(out, where, sources.fields.get(ident, ident), key, text)
    return out


def _check_key(field_name: str, key: str) -> None:
    if not is_valid_secret_key(key):
        raise TemplateError(
            f"{field_name}: the rendered key {masked_name(key)} is not a valid Secret key ({SECRET_KEY_RULE})"
        )


def _metadata(out: Rendered, where: str, field_name: str, key: str, value: str) -> None:
    """A rendered label or annotation, refused as `target.labels` / `target.annotations` refuse
    one; a label value is also checked against Kubernetes' rule (never quoted: it may be a value)."""
    check = check_labels if where == "labels" else check_annotations
    if not _LABEL_KEY.fullmatch(key):
        raise TemplateError(
            f"{field_name}: the rendered {where[:-1]} key {masked_name(key)} is not a valid key"
        )
    try:
        check({key: value})
    except ValueError as exc:
        raise TemplateError(f"{field_name}: {exc}") from None
    if where == "labels" and not _LABEL_VALUE.fullmatch(value):
        raise TemplateError(
            f"{field_name}: the rendered value of label {key!r} is not a valid label value "
            "(at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)"
        )
    (out.labels if where == "labels" else out.annotations)[key] = value


def with_metadata(es: ExternalSecret, rendered: Rendered) -> ExternalSecret:
    """`es` with its template's labels and annotations as rendered, for planning the write."""
    template = es.spec.target.template
    if template is None or not (rendered.labels or rendered.annotations):
        return es
    metadata = TemplateMetadata.model_construct(labels=rendered.labels, annotations=rendered.annotations)
    target = es.spec.target.model_copy(
        update={"template": template.model_copy(update={"metadata": metadata})}
    )
    return es.model_copy(update={"spec": es.spec.model_copy(update={"target": target})})


def renders_metadata(template: TemplateSpec | None) -> bool:
    """The Secret's labels or annotations come from templates (their change is not in the data
    fingerprint, so the target must be read to compare them)."""
    return template is not None and bool(
        template.metadata.labels
        or template.metadata.annotations
        or any(e.target != "Data" for e in template.template_from)
    )
