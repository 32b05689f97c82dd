"""Building the target Secret's data from fetched values: `dataFrom`, then `data`.

A template, when present, is rendered afterwards over this data, in a render worker
process (`renderer.py`, `sandbox.py`): a tenant's template must not run on the
operator's event loop. Every error names the spec field it comes from.
"""

from __future__ import annotations

from collections.abc import Mapping

from vaultsync.errors import InvalidSpec, VaultsyncError
from vaultsync.models import (
    SECRET_KEY_RULE,
    DataFromItem,
    DataItem,
    ExternalSecretSpec,
    SourceRef,
    StoreRef,
    is_valid_secret_key,
)
from vaultsync.properties import extract_all, masked_name, select_property
from vaultsync.providers.base import RemoteRef, RemoteValue

Fetched = Mapping[RemoteRef, RemoteValue | VaultsyncError]


def build_data(
    spec: ExternalSecretSpec, fetched: Fetched, sourced: Mapping[StoreRef, Fetched] | None = None
) -> tuple[dict[str, bytes], dict[str, str]]:
    """The Secret's data and the remote versions read, from what the providers returned.

    `dataFrom` entries come first and `data` entries override them. Each error
    names the spec field it comes from. `fetched` holds the values read from
    `spec.storeRef`; an entry with its own `sourceRef` takes its value from
    `sourced[that store]` (from `fetched` when `sourced` lacks it, as `vaultsync render` does).
    """
    data: dict[str, bytes] = {}
    versions: dict[str, str] = {}
    tables = sourced or {}

    def value_of(ref: RemoteRef, field: str, source: SourceRef | None = None) -> bytes:
        result = (fetched if source is None else tables.get(source.store_ref, fetched))[ref]
        if isinstance(result, VaultsyncError):
            raise result.at(field)
        if result.version:
            versions[ref.key if not ref.version else f"{ref.key}@{ref.version}"] = result.version
        return result.value

    for i, item in enumerate(spec.data_from):
        field = f"spec.dataFrom[{i}].extract"
        raw = value_of(RemoteRef(item.extract.key, item.extract.version), f"{field}.key", item.source_ref)
        for name, value in extract_all(raw, key=item.extract.key, field=field).items():
            if not is_valid_secret_key(name):
                raise InvalidSpec(
                    f"{field}: property {masked_name(name)} of remote key {item.extract.key!r} "
                    f"is not a valid Secret key ({SECRET_KEY_RULE})"
                )
            data[name] = value
    for i, entry in enumerate(spec.data):
        field = f"spec.data[{i}].remoteRef"
        ref = RemoteRef(entry.remote_ref.key, entry.remote_ref.version)
        raw = value_of(ref, f"{field}.key", entry.source_ref)
        data[entry.secret_key] = select_property(
            raw, entry.remote_ref.property, key=ref.key, field=f"{field}.property"
        )
    return data, versions


def remote_refs(spec: ExternalSecretSpec) -> list[RemoteRef]:
    """Every distinct remote value an ExternalSecret needs, in spec order."""
    refs = [RemoteRef(i.extract.key, i.extract.version) for i in spec.data_from]
    refs += [RemoteRef(i.remote_ref.key, i.remote_ref.version) for i in spec.data]
    return list(dict.fromkeys(refs))


def refs_by_store(spec: ExternalSecretSpec) -> dict[StoreRef, list[RemoteRef]]:
    """The distinct remote values to read from each store, `spec.storeRef` first, then the
    stores of `sourceRef`s in spec order; an entry without a `sourceRef` reads `spec.storeRef`."""
    stores: dict[StoreRef, dict[RemoteRef, None]] = {spec.store_ref: {}}
    for item in spec.data_from:
        store = item.source_ref.store_ref if item.source_ref else spec.store_ref
        stores.setdefault(store, {})[RemoteRef(item.extract.key, item.extract.version)] = None
    for entry in spec.data:
        store = entry.source_ref.store_ref if entry.source_ref else spec.store_ref
        stores.setdefault(store, {})[RemoteRef(entry.remote_ref.key, entry.remote_ref.version)] = None
    return {store: list(refs) for store, refs in stores.items() if refs}


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
