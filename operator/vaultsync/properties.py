"""Picking values out of JSON secrets: `remoteRef.property` and `dataFrom.extract`.

Vaults commonly store one JSON document per secret (`{"username": .., "password": ..}`).
This is shared by every provider, so `property` means the same thing everywhere.
Errors name the key and the property path, never the value.
"""

from __future__ import annotations

import json
from typing import Any

from vaultsync.errors import PropertyNotFound


def _load_json(value: bytes, key: str, field: str) -> Any:
    try:
        return json.loads(value)
    except (ValueError, UnicodeDecodeError):
        raise PropertyNotFound(
            f"{field}: the value of remote key {key!r} is not a JSON document, "
            "so a property cannot be selected from it"
        ) from None


def _encode(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def select_property(value: bytes, prop: str, *, key: str, field: str) -> bytes:
    """The property `prop` of a JSON value; nested fields by dotted path (`db.password`).

    A top-level name that itself contains dots (`tls.crt`) wins over the nested path.
    Strings come out as-is; objects, numbers and booleans as compact JSON.
    """
    if not prop:
        return value
    document = _load_json(value, key, field)
    if isinstance(document, dict) and prop in document:
        return _encode(document[prop])
    current = document
    for part in prop.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            raise PropertyNotFound(f"{field}: remote key {key!r} has no property {prop!r}")
    return _encode(current)


def extract_all(value: bytes, *, key: str, field: str) -> dict[str, bytes]:
    """Every top-level property of a JSON object, one Secret key each."""
    document = _load_json(value, key, field)
    if not isinstance(document, dict):
        raise PropertyNotFound(
            f"{field}: the value of remote key {key!r} is not a JSON object, so it cannot be extracted"
        )
    return {str(name): _encode(item) for name, item in document.items()}
