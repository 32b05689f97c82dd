"""Templates kept in ConfigMaps and Secrets (ESO's `templateFrom`), and how the output joins.

External Secrets Operator lets a team keep one template in a ConfigMap and use it from many
ExternalSecrets. The objects are read with the operator's rights, which reach every
namespace, so a template source is only ever looked for in the ExternalSecret's own
namespace (`models.ExternalSecret` refuses any other), a Secret that is a credential of the
cluster is no template, and what is read is bounded before any rendering. The texts then
render in the render workers like `template.data` (`renderer.py`), under the same limits.

Pure: the reconciler reads the objects and hands them in, so the rules are tested
without a server.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vaultsync.constants import TEMPLATE_FROM_MAX_TOTAL_BYTES
from vaultsync.errors import TemplateError
from vaultsync.models import SECRET_KEY_RULE, TemplateRef, TemplateSpec, is_valid_secret_key
from vaultsync.properties import masked_name
from vaultsync.targets import refused_type

FIELD = "spec.target.template.templateFrom"
_ABSENT = object()
Objects = Mapping[tuple[str, str], Mapping[str, Any] | None]  # (kind, name) → body, None: absent


@dataclass(frozen=True)
class Sources:
    """What one ExternalSecret's template renders: id → template text, in the order ESO
    applies them (templateFrom entries, then `data`), each id's spec field when it is not a
    `template.data` key, the ids whose output is a YAML map, and the Secret key of the others."""

    texts: dict[str, str] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)
    maps: frozenset[str] = frozenset()
    keys: dict[str, str] = field(default_factory=dict)


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
    read = 0
    for i, entry in enumerate(template.template_from):
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
    if read > TEMPLATE_FROM_MAX_TOTAL_BYTES:
        raise TemplateError(
            f"{FIELD}: the templates read from ConfigMaps and Secrets are {read} bytes, over the "
            f"limit of {TEMPLATE_FROM_MAX_TOTAL_BYTES}"
        )
    for key, source in template.data.items():
        texts[key], keys[key] = source, key
    return Sources(texts, fields, frozenset(maps), keys)


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
) -> dict[str, bytes]:
    """The Secret's data: the fetched data under `mergePolicy: Merge` (else nothing), then each
    rendered template in order, a later one overriding an earlier one's keys."""
    data: dict[str, bytes] = dict(fetched) if template.merge_policy == "Merge" else {}
    for ident in sources.texts:
        output = rendered[ident]
        if ident in sources.maps:
            for key, value in output.items():
                if not is_valid_secret_key(key):
                    raise TemplateError(
                        f"{sources.fields[ident]}: the rendered key {masked_name(key)} is not a "
                        f"valid Secret key ({SECRET_KEY_RULE})"
                    )
                data[key] = value.encode("utf-8", errors="surrogateescape")
        else:
            data[sources.keys[ident]] = output
    return data
