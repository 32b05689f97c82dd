"""Building the target Secret's data from fetched values: `dataFrom`, then `data`.

A `dataFrom` entry yields many keys: the properties of one JSON value (`extract`) or one
key per remote secret a listing matched (`find`, see `finder.py`); their names go through
`rewrite`, else `conversionStrategy`, and their values through `decodingStrategy`, as
External Secrets Operator defines them (`keymapping.py`). A template, when present, is
rendered afterwards over this data, in a render worker process (`renderer.py`,
`sandbox.py`): a tenant's template must not run on the operator's event loop; so is a
`rewrite[].transform`, through the `transform` callback. Every error names the spec
field it comes from.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping

from vaultsync.constants import REGEXP_WORK_BUDGET
from vaultsync.errors import InvalidSpec, SecretNotFound, TemplateError, VaultsyncError
from vaultsync.keymapping import check_keys, convert_key, decode_all, renamed, rewrite_regexp
from vaultsync.models import DataFromItem, DataItem, ExternalSecretSpec, SourceRef, StoreRef, TemplateSpec
from vaultsync.properties import extract_all, masked_name, select_property
from vaultsync.providers.base import RemoteRef, RemoteValue
from vaultsync.renderer import TemplateRenderer
from vaultsync.tenantregexp import Budget

# (template, name, field) → the new name; renders in the sandbox (reconcile.py supplies it).
Transform = Callable[[str, str, str], Awaitable[str]]
Found = Mapping[int, tuple[str, ...]]  # dataFrom index → the remote keys its find matched

Fetched = Mapping[RemoteRef, RemoteValue | VaultsyncError]


def sandboxed_transform(renderer: TemplateRenderer, namespace: str) -> Transform:
    """`rewrite[].transform` rendered like `target.template`: in a worker process, under the
    same limits, the name being the variable `value`."""

    async def transform(template: str, name: str, field: str) -> str:
        try:
            out = await renderer.render(
                namespace, TemplateSpec(data={"key": template}), {"value": name.encode()}
            )
        except TemplateError as exc:  # it names target.template's key; this is the field at fault
            raise TemplateError(f"{field}: {exc.message.split(': ', 1)[-1]}") from None
        return out["key"].decode("utf-8", errors="surrogateescape")

    return transform


async def build_data(
    spec: ExternalSecretSpec,
    fetched: Fetched,
    sourced: Mapping[StoreRef, Fetched] | None = None,
    found: Found | None = None,
    transform: Transform | None = None,
) -> tuple[dict[str, bytes], dict[str, str]]:
    """The Secret's data and the remote versions read, from what the providers returned.

    `dataFrom` entries come first and `data` entries override them. Each error
    names the spec field it comes from. `fetched` holds the values read from
    `spec.storeRef`; an entry with its own `sourceRef` takes its value from
    `sourced[that store]` (from `fetched` when `sourced` lacks it, as `vaultsync render` does).
    A `find` entry's keys are `found[its index]`, read from its own store likewise.
    """
    data: dict[str, bytes] = {}
    versions: dict[str, str] = {}
    tables = sourced or {}
    budget = Budget(REGEXP_WORK_BUDGET)  # every rewrite of this ExternalSecret together

    def table(source: SourceRef | None) -> Fetched:
        return fetched if source is None else tables.get(source.store_ref, fetched)

    def value_of(ref: RemoteRef, field: str, source: SourceRef | None = None) -> bytes:
        result = table(source)[ref]
        if isinstance(result, VaultsyncError):
            raise result.at(field)
        if result.version:
            versions[ref.key if not ref.version else f"{ref.key}@{ref.version}"] = result.version
        return result.value

    for i, item in enumerate(spec.data_from):
        if item.extract is not None:
            field = f"spec.dataFrom[{i}].extract"
            raw = value_of(RemoteRef(item.extract.key, item.extract.version), f"{field}.key", item.source_ref)
            values = extract_all(raw, key=item.extract.key, field=field)
            shown: Callable[[str], str] = masked_name
            what: Callable[[str], str] = functools.partial(_property_of, item.extract.key)
        else:
            field = f"spec.dataFrom[{i}].find"
            values, listed = {}, table(item.source_ref)
            for key in (found or {}).get(i, ()):
                if not isinstance(listed[RemoteRef(key)], SecretNotFound):  # deleted since listed
                    values[key] = value_of(RemoteRef(key), field, item.source_ref)
            shown, what = repr, _remote_key
        data.update(await _keys_of(i, item, values, field, what, shown, transform, budget))
    for i, entry in enumerate(spec.data):
        field = f"spec.data[{i}].remoteRef"
        ref = RemoteRef(entry.remote_ref.key, entry.remote_ref.version)
        raw = value_of(ref, f"{field}.key", entry.source_ref)
        value = select_property(raw, entry.remote_ref.property, key=ref.key, field=f"{field}.property")
        data.update(
            decode_all({entry.secret_key: value}, entry.remote_ref.decoding_strategy, field=field, shown=repr)
        )
    return data, versions


async def _keys_of(
    index: int,
    item: DataFromItem,
    values: dict[str, bytes],
    field: str,
    what: Callable[[str], str],
    shown: Callable[[str], str],
    transform: Transform | None,
    budget: Budget,
) -> dict[str, bytes]:
    """One dataFrom entry's names rewritten (else converted) and checked, values decoded."""
    source = item.extract or item.find
    assert source is not None
    for j, operation in enumerate(item.rewrite):
        where = f"spec.dataFrom[{index}].rewrite[{j}]"
        if operation.regexp is not None:
            values = rewrite_regexp(
                values,
                operation.regexp.source,
                operation.regexp.target,
                field=f"{where}.regexp",
                shown=shown,
                budget=budget,
            )
        elif operation.transform is not None:
            if transform is None:
                raise InvalidSpec(f"{where}.transform: templates cannot be rendered here")
            template, field_of = operation.transform.template, f"{where}.transform.template"
            names = {name: await transform(template, name, field_of) for name in values}
            values = renamed(values, names.__getitem__, field=field_of, shown=shown)
    if item.rewrite:
        last = item.rewrite[-1]
        kind = "regexp.target" if last.regexp is not None else "transform.template"
        where = f"spec.dataFrom[{index}].rewrite[{len(item.rewrite) - 1}].{kind}"
        check_keys(values, field=where, describe=lambda name: f"the rewritten name {shown(name)}")
    else:
        strategy = source.conversion_strategy
        values = renamed(values, lambda name: convert_key(name, strategy), field=field, shown=shown)
        check_keys(values, field=field, describe=what)
    return decode_all(values, source.decoding_strategy, field=field, shown=shown)


def _property_of(key: str, name: str) -> str:
    return f"property {masked_name(name)} of remote key {key!r}"


def _remote_key(name: str) -> str:
    return f"remote key {name!r}"


def refs_by_store(spec: ExternalSecretSpec, found: Found | None = None) -> dict[StoreRef, list[RemoteRef]]:
    """Each store some entry reads, `spec.storeRef` first, then the stores of `sourceRef`s in
    spec order, with the distinct remote values to read from it; `found`: what the `find`
    entries matched (finder.py; a store read only by find entries has none before)."""
    stores: dict[StoreRef, dict[RemoteRef, None]] = {spec.store_ref: {}} if spec.store_ref else {}
    used: set[StoreRef] = set()
    for i, item in enumerate(spec.data_from):
        used.add(store := spec.store_of(item.source_ref))
        refs = stores.setdefault(store, {})
        if item.extract is not None:
            refs[RemoteRef(item.extract.key, item.extract.version)] = None
        else:
            refs.update(dict.fromkeys(RemoteRef(key) for key in (found or {}).get(i, ())))
    for entry in spec.data:
        used.add(store := spec.store_of(entry.source_ref))
        stores.setdefault(store, {})[RemoteRef(entry.remote_ref.key, entry.remote_ref.version)] = None
    return {store: list(refs) for store, refs in stores.items() if store in used}


def remote_refs(spec: ExternalSecretSpec, found: Found | None = None) -> list[RemoteRef]:
    """Every distinct remote value an ExternalSecret needs, whatever its store (`vaultsync
    render` reads them all from one values file); `found` as for `refs_by_store`."""
    return list(dict.fromkeys(ref for refs in refs_by_store(spec, found).values() for ref in refs))


def source_field(spec: ExternalSecretSpec, store: StoreRef) -> str:
    """The spec field that names `store`, for messages: `spec.storeRef.name`, else the first
    entry whose `sourceRef` names it (`spec.data[1].sourceRef.storeRef.name`)."""
    entries: list[DataFromItem | DataItem] = [*spec.data_from, *spec.data]
    if store == spec.store_ref and any(i.source_ref is None for i in entries):
        return "spec.storeRef.name"
    for i, item in enumerate(spec.data_from):
        if item.source_ref is not None and item.source_ref.store_ref == store:
            return f"spec.dataFrom[{i}].sourceRef.storeRef.name"
    for i, entry in enumerate(spec.data):
        if entry.source_ref is not None and entry.source_ref.store_ref == store:
            return f"spec.data[{i}].sourceRef.storeRef.name"
    return "spec.storeRef.name"
