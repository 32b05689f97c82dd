"""Decoding, conversion and rewrite of dataFrom keys, as External Secrets Operator defines them."""

from __future__ import annotations

import base64

import pytest

from vaultsync.errors import InvalidSpec
from vaultsync.keymapping import check_keys, convert_key, decode, decode_all, renamed, rewrite_regexp
from vaultsync.tenantregexp import Budget

SECRET = "s3cr3t-Value/+="


@pytest.mark.parametrize(
    ("strategy", "stored", "expected"),
    [
        ("None", b"aGVsbG8=", b"aGVsbG8="),
        ("Base64", b"aGVsbG8=", b"hello"),
        ("Base64", b"aGVs\nbG8=\r\n", b"hello"),  # Go's decoder skips line breaks
        ("Base64URL", base64.urlsafe_b64encode(b"\xfb\xff"), b"\xfb\xff"),
        ("Auto", b"aGVsbG8=", b"hello"),
        ("Auto", base64.urlsafe_b64encode(b"\xfb\xff"), b"\xfb\xff"),
        ("Auto", b"not base64!", b"not base64!"),
        ("Auto", b"aGVsbG8", b"aGVsbG8"),  # no padding: Go's StdEncoding refuses it, so as it is
    ],
)
def test_decoding_strategies_decode_as_eso_does(strategy: str, stored: bytes, expected: bytes) -> None:
    assert decode(stored, strategy) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("strategy", "stored"),
    [("Base64", b"aGVsbG8"), ("Base64", b"a-_b"), ("Base64URL", b"+/+/"), ("Base64", SECRET.encode())],
)
def test_a_value_that_does_not_decode_is_refused_naming_the_field_not_the_value(
    strategy: str, stored: bytes
) -> None:
    with pytest.raises(InvalidSpec) as caught:
        decode_all({"password": stored}, strategy, field="spec.data[0].remoteRef", shown=repr)  # type: ignore[arg-type]
    field = "spec.data[0].remoteRef.decodingStrategy"
    assert caught.value.message.startswith(
        f"{field}: the value for Secret key 'password' is not valid {strategy}"
    )
    assert stored.decode() not in caught.value.message


@pytest.mark.parametrize(
    ("name", "default", "unicode"),
    [
        ("db-password", "db-password", "db-password"),
        ("path/to/key", "path_to_key", "path_U002f_to_U002f_key"),
        ("a b$", "a_b_", "a_U0020_b_U0024_"),
        ("clé", "clé", "clé"),  # a letter for Go's unicode.IsLetter, so kept (and then refused)
    ],
)
def test_conversion_strategies_convert_as_eso_does(name: str, default: str, unicode: str) -> None:
    assert convert_key(name, "Default") == default
    assert convert_key(name, "Unicode") == unicode


def test_two_names_converted_to_one_key_are_refused_rather_than_one_dropped() -> None:
    with pytest.raises(InvalidSpec) as caught:
        renamed(
            {"a/b": b"1", "a_b": b"2"},
            lambda n: convert_key(n, "Default"),
            field="spec.dataFrom[0].find",
            shown=repr,
        )
    assert caught.value.message == (
        "spec.dataFrom[0].find: remote names 'a/b' and 'a_b' both become Secret key 'a_b'; "
        "only one can be written"
    )


def test_rewrites_remove_a_common_path_as_in_esos_guide() -> None:
    values = {"path/to/my/secrets/username": b"u", "path/to/my/secrets/password": b"p"}
    out = rewrite_regexp(values, "path/to/my/secrets/(.*)", "$1", field="f", shown=repr, budget=Budget(10**6))
    assert out == {"username": b"u", "password": b"p"}


def test_a_rewrite_whose_budget_runs_out_is_refused_naming_the_source() -> None:
    with pytest.raises(InvalidSpec) as caught:
        rewrite_regexp(
            {"x" * 200: b"v"},
            "(x+x+)+y",
            "",
            field="spec.dataFrom[0].rewrite[0].regexp",
            shown=repr,
            budget=Budget(100),
        )
    assert caught.value.message.startswith("spec.dataFrom[0].rewrite[0].regexp.source: ")


@pytest.mark.parametrize("name", ["a/b", "", ".", "..", "..data", "ключ", "x" * 254])
def test_an_invalid_key_is_reported_with_the_field_never_dropped(name: str) -> None:
    with pytest.raises(InvalidSpec) as caught:
        check_keys(
            {"ok": b"1", name: b"2"}, field="spec.dataFrom[0].find", describe=lambda n: f"remote key {n!r}"
        )
    assert caught.value.message == (
        f"spec.dataFrom[0].find: remote key {name!r} is not a valid Secret key (letters, digits, '-', "
        "'_' and '.', at most 253, not '.' or '..' or starting with '..')"
    )
