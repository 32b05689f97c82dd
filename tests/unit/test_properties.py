"""`remoteRef.property` picks fields out of JSON values; errors name the path and key, never the value."""

from __future__ import annotations

import hashlib
import json

import pytest

from vaultsync.constants import Reason
from vaultsync.errors import PropertyNotFound
from vaultsync.properties import extract_all, masked_name, select_property

SECRET = "s3cr3t-Zebra-Quokka-42"
FIELD = "spec.data[0].remoteRef.property"


def select(document: object, prop: str) -> bytes:
    return select_property(json.dumps(document).encode(), prop, key="prod/db", field=FIELD)


def test_a_top_level_property_is_selected() -> None:
    assert select({"username": "app", "password": SECRET}, "password") == SECRET.encode()


def test_a_nested_property_is_selected_by_a_dotted_path() -> None:
    assert select({"db": {"primary": {"password": SECRET}}}, "db.primary.password") == SECRET.encode()


def test_a_list_element_is_selected_by_its_index() -> None:
    assert select({"hosts": ["a.example", "b.example"]}, "hosts.1") == b"b.example"
    assert select({"users": [{"name": "x"}, {"name": "y"}]}, "users.0.name") == b"x"


def test_a_top_level_key_containing_dots_wins_over_the_nested_path() -> None:
    document = {"tls.crt": "top-level", "tls": {"crt": "nested"}}
    assert select(document, "tls.crt") == b"top-level"


def test_without_a_property_the_whole_value_is_used_even_if_it_is_not_json() -> None:
    raw = b"not json at all \xff"
    assert select_property(raw, "", key="k", field=FIELD) == raw


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (5432, b"5432"),
        (1.5, b"1.5"),
        (True, b"true"),
        (None, b"null"),
        ({"b": 1, "a": [1, 2]}, b'{"a":[1,2],"b":1}'),
        (["x", 2], b'["x",2]'),
        ("plain", b"plain"),
    ],
)
def test_values_that_are_not_strings_come_out_as_compact_json(value: object, expected: bytes) -> None:
    assert select({"field": value}, "field") == expected


def test_unicode_strings_come_out_as_utf8() -> None:
    assert select({"name": "Grüße"}, "name") == "Grüße".encode()


@pytest.mark.parametrize(
    ("document", "prop"),
    [
        ({"username": "app", "password": SECRET}, "passwd"),
        ({"db": {"password": SECRET}}, "db.user"),
        ({"db": SECRET}, "db.password"),
        ({"hosts": [SECRET]}, "hosts.1"),
        ({"hosts": [SECRET]}, "hosts.-1"),
        ([SECRET], "password"),
        (SECRET, "password"),
    ],
)
def test_a_missing_property_names_the_field_the_key_and_the_path(document: object, prop: str) -> None:
    with pytest.raises(PropertyNotFound) as caught:
        select(document, prop)
    message = str(caught.value)
    assert message.startswith(f"{FIELD}: ")
    assert "'prod/db'" in message
    assert repr(prop) in message
    assert caught.value.reason is Reason.PROPERTY_NOT_FOUND


@pytest.mark.parametrize(
    "raw",
    [SECRET.encode(), f"{SECRET}{{".encode(), b"\xff\xfe" + SECRET.encode(), b'{"a": "' + SECRET.encode()],
)
def test_a_value_that_is_not_json_has_no_properties(raw: bytes) -> None:
    with pytest.raises(PropertyNotFound, match="is not a JSON document") as caught:
        select_property(raw, "password", key="prod/db", field=FIELD)
    assert str(caught.value).startswith(f"{FIELD}: ")


@pytest.mark.parametrize(
    ("raw", "prop"),
    [
        (json.dumps({"password": SECRET}).encode(), "missing"),
        (json.dumps({"nested": {"deep": SECRET}}).encode(), "nested.deep.deeper"),
        (json.dumps([SECRET]).encode(), "5"),
        (SECRET.encode(), "password"),
        (b'{"password": "' + SECRET.encode() + b'",', "password"),
    ],
)
def test_a_property_error_never_contains_the_value(raw: bytes, prop: str) -> None:
    with pytest.raises(PropertyNotFound) as caught:
        select_property(raw, prop, key="prod/db", field=FIELD)
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value)


def test_extract_makes_every_top_level_property_a_key() -> None:
    raw = json.dumps({"user": "app", "password": SECRET, "port": 5432, "opts": {"ssl": True}}).encode()
    assert extract_all(raw, key="prod/db", field="spec.dataFrom[0].extract") == {
        "user": b"app",
        "password": SECRET.encode(),
        "port": b"5432",
        "opts": b'{"ssl":true}',
    }


@pytest.mark.parametrize("raw", [json.dumps([SECRET]).encode(), json.dumps(SECRET).encode(), SECRET.encode()])
def test_extract_refuses_anything_but_a_json_object_without_echoing_it(raw: bytes) -> None:
    with pytest.raises(PropertyNotFound) as caught:
        extract_all(raw, key="prod/db", field="spec.dataFrom[0].extract")
    message = str(caught.value)
    assert message.startswith("spec.dataFrom[0].extract: ")
    assert "'prod/db'" in message
    assert SECRET not in message


def deeply_nested(depth: int) -> bytes:
    return b'{"db": ' + b"[" * depth + b"1" + b"]" * depth + b"}"


@pytest.mark.parametrize("prop", ["db", "db.0", ""], ids=["property", "path", "extract"])
def test_json_nested_past_the_recursion_limit_is_a_clean_error_naming_the_field(prop: str) -> None:
    with pytest.raises(PropertyNotFound) as caught:
        if prop:
            select_property(deeply_nested(100_000), prop, key="prod/db", field=FIELD)
        else:
            extract_all(deeply_nested(100_000), key="prod/db", field="spec.dataFrom[0].extract")
    message = str(caught.value)
    assert message.startswith(("spec.data[0].remoteRef.property: ", "spec.dataFrom[0].extract: "))
    assert "'prod/db'" in message
    assert "too deeply" in message


def test_json_nested_within_the_limit_is_still_selected() -> None:
    assert select_property(deeply_nested(200), "db", key="prod/db", field=FIELD).startswith(b"[[")


def test_a_masked_name_shows_a_hash_and_a_length_never_the_name() -> None:
    shown = masked_name(SECRET)
    assert SECRET not in shown
    assert SECRET[:6] not in shown
    assert shown == f"sha256:{hashlib.sha256(SECRET.encode()).hexdigest()[:12]} ({len(SECRET)} characters)"
