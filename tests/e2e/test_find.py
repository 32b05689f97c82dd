"""dataFrom.find, rewrite and decodingStrategy on a real API server: what they write, and bad input.

Bad input ends with the exact reason and the field at fault and touches nothing else: a
good ExternalSecret of the same store keeps its Secret unwritten (same resourceVersion) and
Ready. The store is the fake provider, which lists by path; the listing on real vaults is
tests/providers/test_listing.py and test_find_operator_e2e.py.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from tests.e2e.conftest import Vaultsync, fake_entry
from tests.env.waiting import eventually

pytestmark = pytest.mark.e2e

LARGE = "x" * (270 * 1024)  # three of them, Base64-encoded, pass a Secret's 1 MiB
ENTRIES = [
    fake_entry("app/db-user", base64.b64encode(b"admin").decode()),
    fake_entry("app/db-password", base64.b64encode(b"hunter2").decode()),
    fake_entry("app/api/token", "t0k3n"),
    fake_entry("other/key", "o"),
    fake_entry("a" * 3000 + "b", "v"),  # a name that makes (a+)+$ take hours in Python's re
    *(fake_entry(f"big/{i}", LARGE) for i in range(3)),
    *(fake_entry(f"many/{i:03}", "v") for i in range(501)),
]


def test_find_rewrite_and_decoding_write_what_eso_would(vs: Vaultsync, operator: Any) -> None:
    vs.fake_store("fake", ENTRIES)
    vs.external_secret(
        "found",
        {
            "storeRef": {"name": "fake"},
            "dataFrom": [
                {
                    "find": {"path": "app/", "name": {"regexp": "^app/db-"}, "decodingStrategy": "Base64"},
                    "rewrite": [{"regexp": {"source": "^app/(.*)$", "target": "$1"}}],
                },
                {"find": {"path": "app/api/"}},  # no rewrite: conversionStrategy Default
                {"find": {"path": "app/api/", "conversionStrategy": "Unicode"}},
                {
                    "find": {"path": "other/"},
                    "rewrite": [{"transform": {"template": "{{ value | replace('/', '-') | upper }}"}}],
                },
            ],
        },
    )
    vs.wait_data(
        "found",
        {
            "db-user": "admin",
            "db-password": "hunter2",
            "app_api_token": "t0k3n",
            "app_U002f_api_U002f_token": "t0k3n",
            "OTHER-KEY": "o",
        },
    )


BAD: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "regexp-does-not-compile",
        {"find": {"name": {"regexp": "^app/(db"}}},
        "InvalidSpec",
        "spec.dataFrom[0].find.name.regexp: Value error, does not compile as RE2 (Go's regexp) "
        "reads it: missing ): ^app/(db",
    ),
    (
        "regexp-with-a-backreference",
        {"find": {"name": {"regexp": "(a)\\1"}}},
        "InvalidSpec",
        "spec.dataFrom[0].find.name.regexp: Value error, does not compile as RE2 (Go's regexp) "
        "reads it: invalid escape sequence: \\1",
    ),
    (
        "catastrophic-regexp-is-linear",
        {"find": {"path": "aaa", "name": {"regexp": "^(a+)+$"}}},
        "KeyNotFound",
        "spec.dataFrom[0].find: no remote key under path 'aaa' matching name.regexp '^(a+)+$'",
    ),
    (
        "find-matches-nothing",
        {"find": {"path": "app/", "name": {"regexp": "^nothing"}}},
        "KeyNotFound",
        "spec.dataFrom[0].find: no remote key under path 'app/' matching name.regexp '^nothing'",
    ),
    (
        "find-matches-too-many-keys",
        {"find": {"path": "many/"}},
        "InvalidSpec",
        "spec.dataFrom[0].find: matches 501 remote keys, over the 500 one ExternalSecret may use",
    ),
    (
        "find-matches-too-much-for-one-secret",
        {"find": {"path": "big/"}},
        "SecretTooLarge",
        "spec.target: the Secret's data would be",
    ),
    (
        "rewrite-makes-an-invalid-key",
        {"find": {"path": "app/"}, "rewrite": [{"regexp": {"source": "^app/", "target": "x/"}}]},
        "InvalidSpec",
        "spec.dataFrom[0].rewrite[0].regexp.target: the rewritten name 'x/api/token' is not a valid "
        "Secret key",
    ),
    (
        "rewrite-merges-two-keys",
        {"find": {"path": "app/db-"}, "rewrite": [{"regexp": {"source": ".*", "target": "same"}}]},
        "InvalidSpec",
        "spec.dataFrom[0].rewrite[0].regexp: remote names",
    ),
    (
        "transform-that-does-not-render",
        {"find": {"path": "other/"}, "rewrite": [{"transform": {"template": "{{ value | nosuchfilter }}"}}]},
        "TemplateError",
        "spec.dataFrom[0].rewrite[0].transform.template: ",
    ),
    (
        "value-that-is-not-base64",
        {"find": {"path": "other/", "decodingStrategy": "Base64"}},
        "InvalidSpec",
        "spec.dataFrom[0].find.decodingStrategy: the value for Secret key 'other_key' is not valid Base64",
    ),
]


@pytest.mark.parametrize(("name", "data_from", "reason", "message"), BAD, ids=[c[0] for c in BAD])
def test_bad_find_or_rewrite_names_the_field_and_touches_nothing_else(
    vs: Vaultsync, operator: Any, name: str, data_from: dict[str, Any], reason: str, message: str
) -> None:
    vs.fake_store("fake", ENTRIES)
    vs.external_secret(
        "good",
        {"storeRef": {"name": "fake"}, "data": [{"secretKey": "u", "remoteRef": {"key": "other/key"}}]},
    )
    vs.wait_data("good", {"u": "o"})
    before = vs.secret("good").metadata.resource_version

    vs.external_secret(name, {"storeRef": {"name": "fake"}, "dataFrom": [data_from]})
    condition = vs.wait_reason(name, reason)
    assert condition["status"] == "False"
    assert condition["message"].startswith(message), condition["message"]
    assert not vs.secret_exists(name)
    assert vs.secret("good").metadata.resource_version == before
    assert vs.ready("good")["reason"] == "Synced"

    def warned() -> None:
        warnings = [e.reason for e in vs.events(name) if e.type == "Warning"]
        assert warnings == [reason], warnings

    eventually(warned, what=f"one Warning event {reason}")


@pytest.mark.parametrize(
    ("data_from", "message"),
    [
        ({"extract": {"key": "a"}, "find": {"path": "a/"}}, "exactly one of extract or find"),
        ({"find": {}}, "find needs name, tags or path"),
        ({"find": {"name": {"regexp": "x" * 257}}}, "spec.dataFrom[0].find.name.regexp: Too long"),
        ({"extract": {"key": "a"}, "rewrite": [{}]}, "exactly one of regexp or transform"),
        ({"extract": {"key": "a", "decodingStrategy": "Base32"}}, "Unsupported value"),
    ],
)
def test_the_api_server_refuses_what_the_schema_can(
    vs: Vaultsync, data_from: dict[str, Any], message: str
) -> None:
    with pytest.raises(ApiException) as caught:
        vs.external_secret("refused", {"storeRef": {"name": "fake"}, "dataFrom": [data_from]})
    assert caught.value.status == 422
    assert message in str(caught.value.body)
