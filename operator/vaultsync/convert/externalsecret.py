"""ESO's ExternalSecret (and ClusterExternalSecret's template of one) to vaultsync's.

The fields keep ESO's names where vaultsync has them (`data[].remoteRef`, `dataFrom[].extract`,
`target.creationPolicy`); ESO's `secretStoreRef` is vaultsync's `storeRef`, and what ESO puts
in `target.template.{type,metadata}` is vaultsync's `target.{type,labels,annotations}`. ESO
copies the ExternalSecret's own labels and annotations to the Secret when the template has no
`metadata`; the converter writes them into `target` so the Secret keeps them, and reports the
ones vaultsync refuses on a Secret.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from vaultsync.convert.fields import Fields, Report
from vaultsync.convert.gotemplate import Untranslatable, translate
from vaultsync.keymapping import SECRET_KEY_RULE, is_valid_secret_key
from vaultsync.schedule import refresh_interval
from vaultsync.targets import check_annotations, check_labels, check_name, check_type

# gjson path syntax that vaultsync's dotted `property` does not have.
_GJSON_SYNTAX = frozenset("*?#@|\\!%")
_STORE_KINDS = ("SecretStore", "ClusterSecretStore")
_REFRESH_POLICIES = ("Periodic", "OnChange", "CreatedOnce")
_Check = Callable[[dict[str, str]], dict[str, str]]
_NEEDS_STORE = "required unless every entry of data and dataFrom names its store in sourceRef.storeRef"


def convert_external_secret_spec(
    spec: Fields, metadata: dict[str, Any], floor_seconds: float
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    store = _store_ref(spec)
    if store is not None:
        out["storeRef"] = store
    if spec.has("refreshInterval"):
        out["refreshInterval"] = _interval(spec, floor_seconds)
    spec.refuse_unless("refreshPolicy", _REFRESH_POLICIES, "not an ESO refresh policy")
    if spec.get("refreshPolicy") in _REFRESH_POLICIES:
        out["refreshPolicy"] = spec.text("refreshPolicy")
    if spec.has("syncWindows"):
        spec.refuse("syncWindows", "vaultsync has no sync windows")
    data = [_data_item(item, store) for item in spec.children("data")]
    if data:
        out["data"] = data
    data_from = [_data_from_item(item, store) for item in spec.children("dataFrom")]
    if data_from:
        out["dataFrom"] = data_from
    if store is None and any("sourceRef" not in entry for entry in [*data, *data_from]):
        spec.refuse("secretStoreRef", _NEEDS_STORE)
    target = spec.child("target")
    out["target"] = _target(target, metadata) if target is not None else _copied_metadata(spec, metadata)
    if not out["target"]:
        del out["target"]
    spec.finish()
    return out


def _store_ref(spec: Fields) -> dict[str, str] | None:
    ref = spec.child("secretStoreRef")
    if ref is None:  # ESO's too is optional when every entry names its own store
        return None
    out = {"name": ref.text("name"), "kind": ref.text("kind", "SecretStore")}
    if out["kind"] not in _STORE_KINDS:
        ref.refuse("kind", f"{out['kind']!r}: vaultsync reads from a SecretStore or a ClusterSecretStore")
    ref.finish()
    return out


def _interval(spec: Fields, floor_seconds: float) -> str:
    value = spec.text("refreshInterval")
    try:
        seconds = refresh_interval(value)
    except ValueError as exc:  # the operator's own parser: its message says what is wrong
        spec.refuse("refreshInterval", f"{value!r}: {exc}")
        return value
    if 0 < seconds < floor_seconds:
        spec.report(
            "refreshInterval",
            "note",
            f"{value!r} is shorter than vaultsync's floor (--min-refresh-interval, "
            f"{floor_seconds:g} s by default), which raises it",
        )
    return value


def _source_ref(entry: Fields, store: dict[str, str] | None) -> dict[str, Any] | None:
    """An entry's own store (ESO's `sourceRef.storeRef`), kept when it is not the
    ExternalSecret's; vaultsync resolves it with the namespace's permissions, as ESO does."""
    source = entry.child("sourceRef")
    if source is None:
        return None
    ref = source.child("storeRef")
    if source.has("generatorRef"):
        source.refuse("generatorRef", "vaultsync has no generators")
    out = None
    if ref is not None:
        wanted = {"name": ref.text("name"), "kind": ref.text("kind", "SecretStore")}
        if wanted["kind"] not in _STORE_KINDS:
            ref.refuse(
                "kind", f"{wanted['kind']!r}: vaultsync reads from a SecretStore or a ClusterSecretStore"
            )
        ref.finish()
        if wanted != store:
            out = {"storeRef": wanted}
    source.finish()
    return out


_DECODINGS = ("None", "Base64", "Base64URL", "Auto")


def _strategies(ref: Fields, out: dict[str, Any], *, converts: bool) -> None:
    """ESO's strategies vaultsync has are kept (conversion only where names become keys)."""
    ref.refuse_unless("metadataPolicy", ("None",), "vaultsync reads values, not their metadata or tags")
    if converts:
        ref.refuse_unless("conversionStrategy", ("Default", "Unicode"), "not an ESO conversion strategy")
        if ref.has("conversionStrategy"):
            out["conversionStrategy"] = ref.text("conversionStrategy")
    else:
        ref.refuse_unless("conversionStrategy", ("Default",), "vaultsync does not convert key names here")
    ref.refuse_unless("decodingStrategy", _DECODINGS, "not an ESO decoding strategy")
    if ref.text("decodingStrategy", "None") != "None":
        out["decodingStrategy"] = ref.text("decodingStrategy")
    ref.refuse_unless("nullBytePolicy", ("Ignore",), "vaultsync has no null-byte policy")


def _property(ref: Fields) -> str:
    value = ref.text("property")
    if any(c in _GJSON_SYNTAX for c in value):
        ref.refuse("property", f"{value!r}: a gjson query; vaultsync's property is a dotted path")
    return value


def _data_item(item: Fields, store: dict[str, str] | None) -> dict[str, Any]:
    key = item.text("secretKey")
    if not is_valid_secret_key(key):
        item.refuse("secretKey", f"{key!r} is not a valid Secret key ({SECRET_KEY_RULE})")
    source = _source_ref(item, store)
    out: dict[str, Any] = {"secretKey": key}
    ref = item.child("remoteRef")
    if ref is None:
        item.refuse("remoteRef", "an entry needs a remoteRef")
        return out
    remote: dict[str, Any] = {"key": ref.text("key")}
    prop = _property(ref)
    if prop:
        remote["property"] = prop
    if ref.has("version"):
        remote["version"] = ref.text("version")
    _strategies(ref, remote, converts=False)
    ref.finish()
    out["remoteRef"] = remote
    if source is not None:
        out["sourceRef"] = source
    item.finish()
    return out


def _data_from_item(item: Fields, store: dict[str, str] | None) -> dict[str, Any]:
    source = _source_ref(item, store)
    extract, find = item.child("extract"), item.child("find")
    out: dict[str, Any] = {}
    if extract is not None:
        out["extract"] = {"key": extract.text("key")}
        if extract.has("version"):
            out["extract"]["version"] = extract.text("version")
        if extract.has("property"):
            extract.refuse("property", "vaultsync extracts the top-level properties of the whole value")
        _strategies(extract, out["extract"], converts=True)
        extract.finish()
    elif find is not None:
        out["find"] = _find(find)
    else:
        item.refuse("extract", "an entry needs extract or find")
    rewrites = [_rewrite(r) for r in item.children("rewrite")]
    if rewrites:
        out["rewrite"] = rewrites
    if source is not None:
        out["sourceRef"] = source
    item.finish()
    return out


def _find(find: Fields) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if find.has("path"):
        out["path"] = find.text("path")
    name = find.child("name")
    if name is not None:
        out["name"] = {"regexp": name.text("regexp")}
        name.finish()
    tags = find.get("tags")
    if tags:
        out["tags"] = {str(k): str(v) for k, v in tags.items()} if isinstance(tags, Mapping) else {}
    _strategies(find, out, converts=True)
    find.finish()
    return out


def _rewrite(rewrite: Fields) -> dict[str, Any]:
    out: dict[str, Any] = {}
    regexp, transform = rewrite.child("regexp"), rewrite.child("transform")
    if regexp is not None:
        out["regexp"] = {"source": regexp.text("source"), "target": regexp.text("target")}
        regexp.finish()
    if transform is not None:
        try:
            out["transform"] = {"template": translate(transform.text("template"))}
        except Untranslatable as exc:
            transform.refuse("template", f"cannot be translated to Jinja2: {exc}")
        transform.finish()
    rewrite.finish()
    return out


def _target(target: Fields, metadata: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if target.has("name"):
        out["name"] = target.text("name")
        try:
            check_name(out["name"])
        except ValueError as exc:
            target.refuse("name", str(exc))
    policy = target.text("creationPolicy", "Owner")
    if policy in ("Owner", "Merge", "Orphan"):
        if policy != "Owner":
            out["creationPolicy"] = policy
    else:
        target.refuse(
            "creationPolicy", f"{policy!r}: vaultsync creates (Owner, Orphan) or merges (Merge) a Secret"
        )
    deletion = target.text("deletionPolicy", "Retain")
    if deletion == "Delete":
        out["deletionPolicy"] = "Delete"
        target.report(
            "deletionPolicy",
            "note",
            "vaultsync deletes the Secret only when every remote key is gone; one missing key is KeyNotFound "
            "and the Secret keeps its data (ESO drops that key)",
        )
    elif deletion != "Retain":
        target.refuse("deletionPolicy", f"{deletion!r}: vaultsync has Retain and Delete")
    if target.get("immutable"):
        if policy == "Merge":
            target.refuse(
                "immutable", "vaultsync refuses immutable with creationPolicy Merge (someone else's Secret)"
            )
        else:
            out["immutable"] = True
    template = target.child("template")
    if template is None:
        out.update(_copied_metadata(target, metadata))
    else:
        out.update(_template(template, metadata))
    target.finish()
    return out


def _copied_metadata(where: Fields, metadata: dict[str, Any]) -> dict[str, Any]:
    """ESO's default: the ExternalSecret's labels and annotations are copied to the Secret."""
    return _secret_metadata(where.report_to, "metadata", metadata)


def _secret_metadata(report: Report, prefix: str, source: Mapping[str, Any]) -> dict[str, Any]:
    """`labels` and `annotations` for the Secret, from `source` (at `prefix` in the ESO object)."""
    out: dict[str, Any] = {}
    for name, check in (("labels", check_labels), ("annotations", check_annotations)):
        kept = _allowed(report, f"{prefix}.{name}", dict(source.get(name) or {}), check)
        if kept:
            out[name] = kept
    return out


def _allowed(report: Report, field: str, values: dict[str, Any], check: _Check) -> dict[str, str]:
    """The entries vaultsync's own check (targets.py) accepts on a Secret; the others reported."""
    kept: dict[str, str] = {}
    for key, value in values.items():
        try:
            check({key: str(value)})
        except ValueError as exc:
            report(f"{field}[{key}]", "dropped", f"not copied to the Secret: {exc}")
            continue
        kept[key] = str(value)
    return kept


def _template(template: Fields, metadata: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    kind = template.text("type")
    if kind:
        try:
            check_type(kind)
            out["type"] = kind
        except ValueError as exc:
            template.refuse("type", str(exc))
    template.refuse_unless("engineVersion", ("v2",), "vaultsync translates ESO's v2 templates only")
    template.refuse_unless("mergePolicy", ("Replace", "Merge"), "vaultsync has Replace and Merge")
    kept: dict[str, Any] = {}
    if template.text("mergePolicy", "Replace") == "Merge":
        kept["mergePolicy"] = "Merge"
    templates_from = [_template_from(entry) for entry in template.children("templateFrom")]
    if templates_from:
        kept["templateFrom"] = templates_from
    meta = template.child("metadata")
    if meta is None:
        out.update(_copied_metadata(template, metadata))
    else:
        written = {
            "labels": dict(meta.get("labels") or {}),
            "annotations": dict(meta.get("annotations") or {}),
        }
        templated = _templated_metadata(meta, written)  # takes the templated values out of `written`
        if templated:
            kept["metadata"] = templated
        out.update(_secret_metadata(meta.report_to, meta.path, written))
        if meta.has("finalizers"):
            meta.refuse("finalizers", "vaultsync adds no finalizers to a Secret")
        meta.finish()
    sources = template.get("data") or {}
    rendered: dict[str, str] = {}
    for key, source in sources.items():
        if not is_valid_secret_key(str(key)):
            template.refuse(f"data.{key}", f"not a valid Secret key ({SECRET_KEY_RULE})")
            continue
        try:
            rendered[str(key)] = translate(str(source))
        except Untranslatable as exc:
            template.refuse(f"data.{key}", f"no exact translation: {exc}")
    if rendered:
        kept["data"] = rendered
    if kept:
        out["template"] = kept
    template.finish()
    return out


def _templated_metadata(meta: Fields, written: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """ESO's metadata values are templates: those with an action move to vaultsync's
    template.metadata, translated; literal ones stay the Secret's labels and annotations."""
    out: dict[str, Any] = {}
    for name, values in written.items():
        for key in [k for k, v in values.items() if "{{" in str(v)]:
            source = str(values.pop(key))
            try:
                out.setdefault(name, {})[str(key)] = translate(source)
            except Untranslatable as exc:
                meta.refuse(f"{name}.{key}", f"no exact translation: {exc}")
    return out


def _template_from(entry: Fields) -> dict[str, Any]:
    """One templateFrom entry: a literal translated; a ConfigMap's or Secret's templates stay
    where they are, so their Go templates are reported for translation by hand."""
    out: dict[str, Any] = {}
    entry.refuse_unless(
        "target", ("Data", "Labels", "Annotations"), "vaultsync has Data, Labels and Annotations"
    )
    if entry.text("target", "Data") != "Data":
        out["target"] = entry.text("target")
    for name in ("configMap", "secret"):
        ref = entry.get(name)
        if ref is not None:
            out[name] = ref
            entry.report(
                name,
                "note",
                "the templates in it are Go templates; vaultsync's are Jinja2: translate them "
                "(`{{ .user }}` is `{{ user }}`; see docs/differences.md)",
            )
    if entry.has("literal"):
        try:
            out["literal"] = translate(entry.text("literal"))
        except Untranslatable as exc:
            entry.refuse("literal", f"no exact translation: {exc}")
    entry.finish()
    return out
