"""Bad input ends with the exact reason and the field at fault, and touches nothing else."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Vaultsync, fake_entry
from tests.env import kube
from tests.env.waiting import eventually

pytestmark = pytest.mark.e2e

BIG = "x" * 600_000

CASES: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "missing-store",
        {"storeRef": {"name": "nope"}, "data": [{"secretKey": "a", "remoteRef": {"key": "db"}}]},
        "StoreNotFound",
        "spec.storeRef.name",
    ),
    (
        "missing-key",
        {"storeRef": {"name": "fake"}, "data": [{"secretKey": "a", "remoteRef": {"key": "absent"}}]},
        "KeyNotFound",
        "spec.data[0].remoteRef.key",
    ),
    (
        "missing-property",
        {
            "storeRef": {"name": "fake"},
            "data": [
                {"secretKey": "a", "remoteRef": {"key": "db", "property": "user"}},
                {"secretKey": "b", "remoteRef": {"key": "db", "property": "nope"}},
            ],
        },
        "PropertyNotFound",
        "spec.data[1].remoteRef.property",
    ),
    (
        "broken-template",
        {
            "storeRef": {"name": "fake"},
            "target": {"template": {"data": {"url": "{{ user }:{{ pass }}"}}},
            "data": [{"secretKey": "user", "remoteRef": {"key": "db", "property": "user"}}],
        },
        "TemplateError",
        "spec.target.template.data.url",
    ),
    (
        "undefined-in-template",
        {
            "storeRef": {"name": "fake"},
            "target": {"template": {"data": {"url": "{{ user }}:{{ typo }}"}}},
            "data": [{"secretKey": "user", "remoteRef": {"key": "db", "property": "user"}}],
        },
        "TemplateError",
        "spec.target.template.data.url",
    ),
    (
        "too-large",
        {
            "storeRef": {"name": "fake"},
            "data": [
                {"secretKey": "a", "remoteRef": {"key": "big"}},
                {"secretKey": "b", "remoteRef": {"key": "big", "version": "1"}},
            ],
        },
        "SecretTooLarge",
        "spec.target",
    ),
    (
        "extract-bad-key-name",
        {"storeRef": {"name": "fake"}, "dataFrom": [{"extract": {"key": "weird"}}]},
        "InvalidSpec",
        "spec.dataFrom[0].extract",
    ),
    (
        # the managed-keys annotation would list 1,001 keys: refused before any write, not
        # met as a 422 on every retry once the annotations pass the API server's 256 KiB
        "extract-too-many-keys",
        {"storeRef": {"name": "fake"}, "dataFrom": [{"extract": {"key": "many"}}]},
        "SecretTooLarge",
        "spec.target: the Secret would have 1001 keys",
    ),
    (
        # valid JSON, not encodable as UTF-8: was an UnicodeEncodeError crash, retried forever
        "lone-surrogate",
        {
            "storeRef": {"name": "fake"},
            "data": [{"secretKey": "a", "remoteRef": {"key": "surrogate", "property": "a"}}],
        },
        "PropertyNotFound",
        "spec.data[0].remoteRef.property: the value of remote key 'surrogate' holds a JSON string",
    ),
    (
        "extract-not-an-object",
        {"storeRef": {"name": "fake"}, "dataFrom": [{"extract": {"key": "plain"}}]},
        "PropertyNotFound",
        "spec.dataFrom[0].extract",
    ),
]


@pytest.mark.parametrize(("name", "spec", "reason", "field"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_names_the_field_and_touches_nothing_else(
    vs: Vaultsync, operator: Any, name: str, spec: dict[str, Any], reason: str, field: str
) -> None:
    vs.fake_store(
        "fake",
        [
            fake_entry("db", {"user": "u1"}),
            fake_entry("big", BIG, "1"),
            fake_entry("weird", {"..hidden": "v"}),  # invalid even after conversionStrategy Default
            fake_entry("plain", "just text"),
            fake_entry("many", {f"k{i}": "v" for i in range(1001)}),
            fake_entry("surrogate", '{"a": "\\ud800"}'),
        ],
    )
    vs.external_secret(
        "good",
        {
            "storeRef": {"name": "fake"},
            "data": [{"secretKey": "u", "remoteRef": {"key": "db", "property": "user"}}],
        },
    )
    vs.wait_data("good", {"u": "u1"})
    before = vs.secret("good").metadata.resource_version

    vs.external_secret(name, spec)
    condition = vs.wait_reason(name, reason)
    assert condition["status"] == "False"
    assert condition["message"].startswith(field), condition["message"]
    assert not vs.secret_exists(name)
    assert vs.secret("good").metadata.resource_version == before
    assert vs.ready("good")["reason"] == "Synced"

    def warned() -> None:
        warnings = [e.reason for e in vs.events(name) if e.type == "Warning"]
        assert warnings == [reason], warnings

    eventually(warned, what=f"one Warning event {reason}")


def test_a_store_in_another_namespace_cannot_be_used(
    vs: Vaultsync, kube_api: kube.KubeApi, operator: Any
) -> None:
    other = kube.create_namespace(kube_api, prefix="vs-other-")
    try:
        Vaultsync(kube_api, other).fake_store("theirs", [fake_entry("db", {"user": "u1"})])
        vs.external_secret(
            "es", {"storeRef": {"name": "theirs"}, "data": [{"secretKey": "a", "remoteRef": {"key": "db"}}]}
        )
        condition = vs.wait_reason("es", "StoreNotFound")
        assert condition["message"].startswith("spec.storeRef.name")
        assert vs.namespace in condition["message"]
    finally:
        kube.delete_namespace(kube_api, other)


def test_cluster_store_conditions_allow_only_matching_namespaces(
    vs: Vaultsync, kube_api: kube.KubeApi, operator: Any
) -> None:
    store = f"css-{vs.namespace}"
    allowed = f"css-ok-{vs.namespace}"
    vs.fake_store(
        store,
        [fake_entry("db", {"user": "u1"})],
        cluster=True,
        conditions=[{"namespaces": ["somewhere-else"]}],
    )
    vs.fake_store(
        allowed,
        [fake_entry("db", {"user": "u1"})],
        cluster=True,
        conditions=[{"namespaceSelector": {"matchLabels": {"app.kubernetes.io/part-of": "vaultsync-tests"}}}],
    )
    try:
        ref = {"data": [{"secretKey": "a", "remoteRef": {"key": "db", "property": "user"}}]}
        vs.external_secret("denied", {"storeRef": {"name": store, "kind": "ClusterSecretStore"}, **ref})
        vs.external_secret("allowed", {"storeRef": {"name": allowed, "kind": "ClusterSecretStore"}, **ref})
        condition = vs.wait_reason("denied", "StoreNotAllowed")
        assert condition["message"].startswith("spec.storeRef.name")
        vs.wait_data("allowed", {"a": "u1"})
        assert not vs.secret_exists("denied")
    finally:
        for name in (store, allowed):
            kube_api.custom.delete_cluster_custom_object(
                "vaultsync.io", "v1alpha1", "clustersecretstores", name
            )
