"""Building the target Secret's data from fetched values: `dataFrom`, then `data`.

A template, when present, is rendered afterwards over this data, in a render worker
process (`renderer.py`, `sandbox.py`): a tenant's template must not run on the
operator's event loop. Every error names the spec field it comes from.
"""

from __future__ import annotations

from collections.abc import Mapping

from vaultsync.errors import InvalidSpec, VaultsyncError
from vaultsync.models import SECRET_KEY_RULE, ExternalSecretSpec, is_valid_secret_key
from vaultsync.properties import extract_all, masked_name, select_property
from vaultsync.providers.base import RemoteRef, RemoteValue


def build_data(
    spec: ExternalSecretSpec, fetched: Mapping[RemoteRef, RemoteValue | VaultsyncError]
) -> tuple[dict[str, bytes], dict[str, str]]:
    """The Secret's data and the remote versions read, from what the providers returned.

    `dataFrom` entries come first and `data` entries override them. Each error
    names the spec field it comes from.
    """
    data: dict[str, bytes] = {}
    versions: dict[str, str] = {}

    def value_of(ref: RemoteRef, field: str) -> bytes:
        result = fetched[ref]
        if isinstance(result, VaultsyncError):
            raise result.at(field)
        if result.version:
            versions[ref.key if not ref.version else f"{ref.key}@{ref.version}"] = result.version
        return result.value

    for i, item in enumerate(spec.data_from):
        field = f"spec.dataFrom[{i}].extract"
        raw = value_of(RemoteRef(item.extract.key, item.extract.version), f"{field}.key")
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
        raw = value_of(ref, f"{field}.key")
        data[entry.secret_key] = select_property(
            raw, entry.remote_ref.property, key=ref.key, field=f"{field}.property"
        )
    return data, versions


def remote_refs(spec: ExternalSecretSpec) -> list[RemoteRef]:
    """Every distinct remote value an ExternalSecret needs, in spec order."""
    refs = [RemoteRef(i.extract.key, i.extract.version) for i in spec.data_from]
    refs += [RemoteRef(i.remote_ref.key, i.remote_ref.version) for i in spec.data]
    return list(dict.fromkeys(refs))
