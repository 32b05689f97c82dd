"""Picking values out of JSON secrets: `remoteRef.property` and `dataFrom.extract`.

Vaults commonly store one JSON document per secret (`{"username": .., "password": ..}`).
This is shared by every provider, so `property` means the same thing everywhere.
Errors name the key and the property path, never the value. A property *name*
found in the value (not written in the spec) may itself be secret-ish (an
API key used as a map key), so it is shown only as `masked_name` does.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from vaultsync.errors import PropertyNotFound


def masked_name(name: str) -> str:
    """A name read from a remote value, as it may appear in a message: a hash and a length.

    `printf %s NAME | sha256sum` shows which of your names it is; the name itself never
    reaches status, Events or logs.
    """
    # surrogatepass: a JSON name may hold a lone surrogate (`"\\ud800"`), which UTF-8 cannot.
    digest = hashlib.sha256(name.encode("utf-8", errors="surrogatepass")).hexdigest()[:12]
    return f"sha256:{digest} ({len(name)} characters)"


def _load_json(value: bytes, key: str, field: str) -> Any:
    try:
        return json.loads(value)
    except RecursionError:
        raise PropertyNotFound(_too_deep(key, field)) from None
    except (ValueError, UnicodeDecodeError):
        raise PropertyNotFound(
            f"{field}: the value of remote key {key!r} is not a JSON document, "
            "so a property cannot be selected from it"
        ) from None


def _too_deep(key: str, field: str) -> str:
    return (
        f"{field}: the value of remote key {key!r} nests JSON too deeply to be parsed "
        "(Python's recursion limit)"
    )


def _encode(value: Any, key: str, field: str) -> bytes:
    if not isinstance(value, str):
        try:
            return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
        except RecursionError:
            raise PropertyNotFound(_too_deep(key, field)) from None
    try:
        return value.encode()
    except UnicodeEncodeError:  # JSON allows a lone surrogate (`"\\ud800"`); UTF-8 does not
        raise PropertyNotFound(
            f"{field}: the value of remote key {key!r} holds a JSON string that is not valid "
            "Unicode (a lone surrogate escape), so it cannot be written as UTF-8"
        ) from None


def select_property(value: bytes, prop: str, *, key: str, field: str) -> bytes:
    """The property `prop` of a JSON value; nested fields by dotted path (`db.password`).

    A top-level name that itself contains dots (`tls.crt`) wins over the nested path.
    Strings come out as-is; objects, numbers and booleans as compact JSON.
    """
    if not prop:
        return value
    document = _load_json(value, key, field)
    if isinstance(document, dict) and prop in document:
        return _encode(document[prop], key, field)
    current = document
    for part in prop.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            raise PropertyNotFound(f"{field}: remote key {key!r} has no property {prop!r}")
    return _encode(current, key, field)


def extract_all(value: bytes, *, key: str, field: str) -> dict[str, bytes]:
    """Every top-level property of a JSON object, one Secret key each."""
    document = _load_json(value, key, field)
    if not isinstance(document, dict):
        raise PropertyNotFound(
            f"{field}: the value of remote key {key!r} is not a JSON object, so it cannot be extracted"
        )
    return {str(name): _encode(item, key, field) for name, item in document.items()}
