"""Data fingerprints are keyed HMACs over an unambiguous encoding: they show change, never the data."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from vaultsync.fingerprints import combined, data_hmac, namespace_key

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
DATA = {"username": b"app", "password": b"s3cr3t-Zebra-42"}


def test_the_same_data_under_the_same_key_has_the_same_fingerprint() -> None:
    assert data_hmac(KEY, DATA) == data_hmac(KEY, dict(DATA))


def test_the_fingerprint_is_labelled_as_an_hmac_sha256() -> None:
    fingerprint = data_hmac(KEY, DATA)
    assert fingerprint.startswith("hmac-sha256:")
    assert len(fingerprint.removeprefix("hmac-sha256:")) == 64


def test_the_fingerprint_depends_on_the_key() -> None:
    assert data_hmac(KEY, DATA) != data_hmac(OTHER_KEY, DATA)


def test_the_fingerprint_does_not_depend_on_key_order() -> None:
    assert data_hmac(KEY, {"a": b"1", "b": b"2"}) == data_hmac(KEY, {"b": b"2", "a": b"1"})


@pytest.mark.parametrize(
    "changed",
    [
        {"username": b"app", "password": b"s3cr3t-Zebra-43"},
        {"username": b"App", "password": b"s3cr3t-Zebra-42"},
        {"user": b"app", "password": b"s3cr3t-Zebra-42"},
        {"username": b"app"},
        {"username": b"app", "password": b"s3cr3t-Zebra-42", "extra": b""},
        {"username": b"app", "password": b"s3cr3t-Zebra-42 "},
    ],
)
def test_the_fingerprint_changes_with_any_key_or_value(changed: dict[str, bytes]) -> None:
    assert data_hmac(KEY, changed) != data_hmac(KEY, DATA)


def test_the_fingerprint_is_not_a_bare_hash_of_the_data() -> None:
    digest = data_hmac(KEY, DATA).removeprefix("hmac-sha256:")
    bare = [
        hashlib.sha256(b"".join(DATA.values())).hexdigest(),
        hashlib.sha256(b"s3cr3t-Zebra-42").hexdigest(),
        hashlib.sha256(
            json.dumps({k: v.decode() for k, v in DATA.items()}, sort_keys=True).encode()
        ).hexdigest(),
        hashlib.sha256(b"".join(k.encode() + v for k, v in sorted(DATA.items()))).hexdigest(),
    ]
    assert digest not in bare
    assert "s3cr3t" not in data_hmac(KEY, DATA)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ({"ab": b"c"}, {"a": b"bc"}),
        ({"a": b"b", "c": b"d"}, {"a": b"bc", "": b"d"}),
        ({"a": b""}, {}),
        ({"a": b"", "b": b""}, {"ab": b""}),
    ],
)
def test_the_encoding_is_canonical_so_different_data_never_collide(
    left: dict[str, bytes], right: dict[str, bytes]
) -> None:
    assert data_hmac(KEY, left) != data_hmac(KEY, right)


def test_empty_data_has_a_fingerprint_too() -> None:
    assert data_hmac(KEY, {}).startswith("hmac-sha256:")


def test_a_combined_fingerprint_is_stable() -> None:
    fingerprints = {"db-creds": data_hmac(KEY, DATA), "api-keys": data_hmac(KEY, {"k": b"v"})}
    assert combined(fingerprints, KEY) == combined(dict(fingerprints), KEY)
    assert len(combined(fingerprints, KEY)) == 16


def test_a_combined_fingerprint_does_not_depend_on_order() -> None:
    assert combined({"a": "hmac-sha256:1", "b": "hmac-sha256:2"}, KEY) == combined(
        {"b": "hmac-sha256:2", "a": "hmac-sha256:1"}, KEY
    )


def test_a_combined_fingerprint_changes_with_any_secret_or_the_key() -> None:
    base = combined({"a": "hmac-sha256:1", "b": "hmac-sha256:2"}, KEY)
    assert combined({"a": "hmac-sha256:1", "b": "hmac-sha256:3"}, KEY) != base
    assert combined({"a": "hmac-sha256:1", "c": "hmac-sha256:2"}, KEY) != base
    assert combined({"a": "hmac-sha256:1"}, KEY) != base
    assert combined({"a": "hmac-sha256:1", "b": "hmac-sha256:2"}, OTHER_KEY) != base


def test_equal_data_in_two_namespaces_has_different_fingerprints() -> None:
    """A tenant comparing dataHMACs across namespaces learns nothing about equal passwords."""
    shop, billing = namespace_key(KEY, "shop"), namespace_key(KEY, "billing")
    assert data_hmac(shop, DATA) != data_hmac(billing, DATA)
    assert data_hmac(shop, DATA) != data_hmac(KEY, DATA)


def test_a_namespace_key_is_stable_and_derived_one_way_from_the_operator_key() -> None:
    """Pinned: changing the derivation rewrites every managed Secret's annotation once."""
    assert namespace_key(KEY, "shop") == namespace_key(KEY, "shop")
    assert namespace_key(KEY, "shop") == hmac.new(KEY, b"namespace:shop", hashlib.sha256).digest()
    assert namespace_key(KEY, "shop") != namespace_key(OTHER_KEY, "shop")
    assert namespace_key(KEY, "shop") != KEY


def test_namespace_names_cannot_collide_into_one_key() -> None:
    names = ["a", "ab", "a-b", "b", "namespace:a", ""]
    assert len({namespace_key(KEY, n) for n in names}) == len(names)
