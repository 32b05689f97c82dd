"""Turning remote names and values into Secret keys and values, as External Secrets Operator does.

`dataFrom.extract` and `dataFrom.find` produce one Secret key per remote property or per
remote secret, named by whoever wrote the vault. ESO's manifests rely on its exact
rules, so they are kept here: `rewrite` operations first (each one's output is the next
one's input), then, only when there is no rewrite, `conversionStrategy` (`Default`
replaces every character that is not a letter, a digit, `-`, `.` or `_` by `_`; `Unicode`
by `_U<hex>_`), then `decodingStrategy` on the values (`None`, `Base64`, `Base64URL`,
`Auto`: Base64, else Base64URL, else the value as it is).

Where ESO is silent or lenient, vaultsync refuses with the field: a key that is still
not a valid Secret key after all this (ESO fails at the Secret write, naming no field),
and two remote names that become the same key (ESO keeps one of them, silently). A name
read from a value (a property of an extracted JSON) is shown only masked.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from typing import Literal

from vaultsync.constants import REGEXP_WORK_BUDGET
from vaultsync.errors import InvalidSpec
from vaultsync.tenantregexp import Budget, BudgetExceeded, compile_tenant

DecodingStrategy = Literal["None", "Base64", "Base64URL", "Auto"]
ConversionStrategy = Literal["Default", "Unicode"]
Shown = Callable[[str], str]

SECRET_KEY_RULE = "letters, digits, '-', '_' and '.', at most 253, not '.' or '..' or starting with '..'"
_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_URL_ALPHABET = re.compile(rb"[A-Za-z0-9_-]*={0,2}")


def is_valid_secret_key(name: str) -> bool:
    """Kubernetes' own rule for the keys of a Secret's data."""
    return (
        bool(_SECRET_KEY.fullmatch(name))
        and len(name) <= 253
        and name not in (".", "..")
        and not name.startswith("..")
    )


def decode(value: bytes, strategy: DecodingStrategy) -> bytes:
    """The value as `decodingStrategy` wants it; ValueError when it does not decode.

    Go's decoder, which ESO uses, skips line breaks and wants the padding; so does this.
    """
    if strategy == "None":
        return value
    if strategy == "Auto":
        attempts: tuple[DecodingStrategy, ...] = ("Base64", "Base64URL")
        for attempt in attempts:
            try:
                return decode(value, attempt)
            except ValueError:
                continue
        return value
    text = value.replace(b"\r", b"").replace(b"\n", b"")
    try:
        if strategy == "Base64":
            return base64.b64decode(text, validate=True)
        if not _URL_ALPHABET.fullmatch(text):
            raise ValueError("not Base64URL")
        return base64.urlsafe_b64decode(text)
    except binascii.Error:
        raise ValueError(f"not {strategy}") from None


def decode_all(
    values: Mapping[str, bytes], strategy: DecodingStrategy, *, field: str, shown: Shown
) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for key, value in values.items():
        try:
            out[key] = decode(value, strategy)
        except ValueError:
            raise InvalidSpec(
                f"{field}.decodingStrategy: the value for Secret key {shown(key)} is not valid "
                f"{strategy} (use Auto to keep values that are not encoded as they are)"
            ) from None
    return out


def convert_key(name: str, strategy: ConversionStrategy) -> str:
    """ESO's `conversionStrategy`: Unicode letters and digits, `-`, `.`, `_` stay."""
    out: list[str] = []
    for ch in name:
        if ch.isalpha() or ch.isnumeric() or ch in "-._":
            out.append(ch)
        else:
            out.append("_" if strategy == "Default" else f"_U{ord(ch):04x}_")
    return "".join(out)


def renamed(
    values: Mapping[str, bytes], rename: Callable[[str], str], *, field: str, shown: Shown
) -> dict[str, bytes]:
    """`values` under new names; two names becoming one is refused, naming the field."""
    out: dict[str, bytes] = {}
    origin: dict[str, str] = {}
    for name, value in values.items():
        new = rename(name)
        if new in out:
            raise InvalidSpec(
                f"{field}: remote names {shown(origin[new])} and {shown(name)} both become "
                f"Secret key {shown(new)}; only one can be written"
            )
        out[new] = value
        origin[new] = name
    return out


def rewrite_regexp(
    values: Mapping[str, bytes], source: str, target: str, *, field: str, shown: Shown, budget: Budget
) -> dict[str, bytes]:
    """One `rewrite[].regexp`: every name, with every match of `source` replaced by `target`."""
    pattern = compile_tenant(source)  # checked when the spec was parsed
    try:
        return renamed(
            values, lambda name: pattern.replace_all(name, target, budget), field=field, shown=shown
        )
    except BudgetExceeded:
        raise InvalidSpec(
            f"{field}.source: the rewrites of this ExternalSecret take more than "
            f"{REGEXP_WORK_BUDGET} units of regexp work (bytes times RE2 instructions); "
            "simplify the pattern"
        ) from None


def check_keys(values: Mapping[str, bytes], *, field: str, describe: Shown) -> None:
    """Every name is a valid Secret key, or the first that is not is reported with `field`."""
    for name in values:
        if not is_valid_secret_key(name):
            raise InvalidSpec(f"{field}: {describe(name)} is not a valid Secret key ({SECRET_KEY_RULE})")
