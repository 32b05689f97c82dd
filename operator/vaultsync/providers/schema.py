"""Each provider's block of the store CRDs, generated from its pydantic config model.

Why it exists: the config model is what the operator enforces, the CRD block what the
API server enforces before the operator sees an object. Kept by hand in two CRDs and the
chart's copies, they drifted. Now the model is the one source: `make crds` writes
`spec.provider` of both store CRDs from here, and tests/unit/test_crd_generation.py fails
when crds/, the chart's copy and the models disagree.

How a model says what the API server checks (docs/architecture.md, "Adding a provider"):

- the type comes from the annotation: str, bool, int, a `Literal` (an enum), a list or
  tuple (an array), another `ConfigModel` (an object); `X | None` is X, not required;
- a field without a default is required; a non-empty default is published;
- `Field(description=...)` is the field's description (every field needs one);
- `min_length`, `max_length` and `pattern` become the OpenAPI bounds, and pydantic
  enforces the same bounds at run time, for objects the API server did not check;
- CEL rules and other OpenAPI keywords sit beside the field, in
  `Field(json_schema_extra=crd(...))`, or beside the model, in its `model_config`;
- a field the operator requires is required in the CRD too, unless it says
  `crd(crd_required=False)` (CRD_REQUIRED);
- rules that only a namespaced SecretStore has (it never borrows the operator's
  identity) are the config model's `namespaced_rules`, written for its own block.

The walker reads only what pydantic already parsed (`model_fields`), in declaration
order, so the output is byte-stable. Modelled on kubebuilder markers (External Secrets
Operator's provider structs carry `+kubebuilder:validation` comments that controller-gen
turns into the CRD), here as pydantic metadata.
"""

from __future__ import annotations

import re
import types
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, Field
from pydantic.fields import FieldInfo

from vaultsync.constants import ORIGIN_MAX_LENGTH
from vaultsync.origins import origin_pattern, origin_rule
from vaultsync.providers.base import ConfigModel

Node = dict[str, Any]
# `crd(crd_required=False)`: a field the operator requires that the CRD leaves optional,
# because the API server skips every CEL rule of an object that lacks a required field, and
# a CEL rule above the field says better why it is needed (see VaultConfig.auth).
CRD_REQUIRED = "crd_required"


def cel(rule: str, message: str, *, field_path: str = "", reason: str = "") -> dict[str, str]:
    """One `x-kubernetes-validations` entry; `field_path` is relative to the node it sits on."""
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    if reason:
        entry["reason"] = reason
    return entry


def exactly_one(where: str, names: Sequence[str], note: str = "") -> dict[str, str]:
    """The CEL rule of an object that must set exactly one of `names` (a one-of)."""
    count = " + ".join(f"(has(self.{name}) ? 1 : 0)" for name in names)
    message = f"{where} must set exactly one of {', '.join(names)}"
    return cel(f"{count} == 1", f"{message} {note}" if note else message)


def crd(*rules: dict[str, str], **keywords: Any) -> dict[str, Any]:
    """OpenAPI keywords for a field or model: CEL rules plus e.g. `format="byte"`."""
    extra: dict[str, Any] = dict(keywords)
    if rules:
        extra["x-kubernetes-validations"] = list(rules)
    return extra


def origin_field(name: str, schemes: tuple[str, ...], *, description: str, optional: bool) -> Any:
    """A field that holds an origin (see vaultsync.origins), checked by CEL with the same pattern.

    `name` is the field's path below `spec.provider` (e.g. `aws.endpoint`), for the message.
    """
    matches = f"self.matches(r'{origin_pattern(schemes)}')"
    rule = cel(f"self == '' || {matches}" if optional else matches, f"{name} {origin_rule(schemes)}")
    # The length is checked by `check_origin` at run time, with the rule's own words.
    extra = crd(rule, maxLength=ORIGIN_MAX_LENGTH)
    if optional:
        return Field(default="", description=description, json_schema_extra=extra)
    return Field(description=description, json_schema_extra=extra)


def _extra(info: FieldInfo) -> Mapping[str, Any]:
    return info.json_schema_extra if isinstance(info.json_schema_extra, Mapping) else {}


def _constraints(info: FieldInfo, array: bool) -> Node:
    node: Node = {}
    for meta in info.metadata:
        for attr, (text, items) in {
            "min_length": ("minLength", "minItems"),
            "max_length": ("maxLength", "maxItems"),
            "pattern": ("pattern", "pattern"),
        }.items():
            value = getattr(meta, attr, None)
            if value is not None:
                node[items if array else text] = value
    return node


def _unwrap_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _type_schema(annotation: Any, where: str) -> Node:
    """The schema of a type: its own keywords, without the field's description or bounds."""
    annotation = _unwrap_optional(annotation)
    origin = get_origin(annotation)
    if get_origin(annotation) is Annotated:
        info = FieldInfo.from_annotation(annotation)
        node = _type_schema(info.annotation, where)
        node.update(_constraints(info, node["type"] == "array"))
        return node
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return model_schema(annotation, where)
    if origin is Literal:
        return {"type": "string", "enum": list(get_args(annotation))}
    if origin in (list, tuple):
        args = [a for a in get_args(annotation) if a is not Ellipsis]
        return {"type": "array", "items": _type_schema(args[0], f"{where}[]")}
    for python, openapi in ((bool, "boolean"), (int, "integer"), (str, "string")):
        if annotation is python:
            return {"type": openapi}
    raise TypeError(f"{where}: no CRD schema for {annotation!r}")


def _field_schema(info: FieldInfo, where: str) -> Node:
    if not info.description:
        raise TypeError(f"{where}: every field of a provider model needs a description")
    inner = _type_schema(info.annotation, where)
    node: Node = {"type": inner.pop("type"), "description": info.description}
    if "required" in inner:
        node["required"] = inner.pop("required")
    if "enum" in inner:
        node["enum"] = inner.pop("enum")
    default = info.get_default(call_default_factory=True)
    if not info.is_required() and default not in (None, "", (), [], False):
        node["default"] = default
    node.update(_constraints(info, node["type"] == "array"))
    extra = info.json_schema_extra
    if isinstance(extra, Mapping):
        own: list[Any] = list(extra.get("x-kubernetes-validations") or [])  # type: ignore[arg-type]
        rules = [*inner.pop("x-kubernetes-validations", []), *own]
        node.update({k: v for k, v in extra.items() if k not in ("x-kubernetes-validations", CRD_REQUIRED)})
        if rules:
            node["x-kubernetes-validations"] = rules
    node.update(inner)
    return node


def model_schema(model: type[BaseModel], where: str = "") -> Node:
    """The OpenAPI object schema of a config model, fields in declaration order."""
    node: Node = {"type": "object"}
    required = [
        info.alias or name
        for name, info in model.model_fields.items()
        if info.is_required() and _extra(info).get(CRD_REQUIRED, True)
    ]
    if required:
        node["required"] = required
    extra = model.model_config.get("json_schema_extra")
    if isinstance(extra, Mapping):
        node.update(extra)
    node["properties"] = {
        (info.alias or name): _field_schema(info, f"{where}.{info.alias or name}")
        for name, info in model.model_fields.items()
    }
    return node


def _for_block(name: str, rule: Mapping[str, str]) -> dict[str, str]:
    """A rule written for `spec.provider.<name>`, moved up to `spec.provider`."""
    inside = re.sub(r"\bself\b", f"self.{name}", rule["rule"])
    moved = dict(rule, rule=f"!has(self.{name}) || ({inside})")
    if "fieldPath" in rule:
        moved["fieldPath"] = f".{name}{rule['fieldPath']}"
    return moved


def provider_schema(providers: Mapping[str, type[ConfigModel]], *, namespaced: bool) -> Node:
    """`spec.provider` of a store CRD: exactly one block, one per registered provider.

    `providers` maps each name to its config model (the registry's `config_model`s); the
    first line of a model's docstring describes its block. A SecretStore also gets each
    model's `namespaced_rules`.
    """
    names = list(providers)  # the registry's order
    rules = [exactly_one("provider", names)]
    if namespaced:
        for name in names:
            rules.extend(_for_block(name, rule) for rule in providers[name].namespaced_rules)
    properties: Node = {}
    for name in names:
        model = providers[name]
        block = model_schema(model, name)
        description = (model.__doc__ or "").strip().splitlines()[0]
        properties[name] = {"type": block.pop("type"), "description": description, **block}
    return {
        "type": "object",
        "description": "Exactly one provider block.",
        "x-kubernetes-validations": rules,
        "properties": properties,
    }
