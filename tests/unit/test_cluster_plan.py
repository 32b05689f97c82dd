"""ClusterExternalSecret's pure decisions: which namespaces, which ExternalSecret, whose it is."""

from __future__ import annotations

from typing import Any

import pytest

from vaultsync import constants as c
from vaultsync.clusterplan import (
    Namespace,
    controller_uid,
    desired_external_secret,
    invalid_status,
    material,
    namespace_of,
    parse_cluster_external_secret,
    replacement,
    select_namespaces,
    status,
)
from vaultsync.errors import InvalidSpec

ES_SPEC = {
    "storeRef": {"name": "shared", "kind": "ClusterSecretStore"},
    "data": [{"secretKey": "a", "remoteRef": {"key": "k"}}],
}


def body(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "db", "uid": "uid-1", "generation": 3},
        "spec": {"externalSecretSpec": ES_SPEC, **spec},
    }


NAMESPACES = {
    "team-a": Namespace({"tier": "prod"}),
    "team-b": Namespace({"tier": "dev"}),
    "team-c": Namespace({"tier": "prod"}, terminating=True),
    "kube-system": Namespace({}),
}


def test_a_namespace_is_selected_by_name_or_by_any_selector() -> None:
    ces = parse_cluster_external_secret(
        body(namespaces=["kube-system"], namespaceSelectors=[{"matchLabels": {"tier": "prod"}}])
    )
    assert select_namespaces(ces.spec, NAMESPACES, None).targets == {"team-a", "kube-system"}


def test_terminating_namespaces_are_skipped_and_missing_listed_ones_failed() -> None:
    ces = parse_cluster_external_secret(body(namespaces=["team-c", "nope"], namespaceSelectors=[{}]))
    selection = select_namespaces(ces.spec, NAMESPACES, None)
    assert selection.targets == {"team-a", "team-b", "kube-system"}
    assert selection.failed == {"nope": "namespace does not exist"}


def test_nothing_is_selected_without_names_or_selectors() -> None:
    ces = parse_cluster_external_secret(body())
    assert select_namespaces(ces.spec, NAMESPACES, None).targets == frozenset()


def test_a_namespaced_operator_reaches_only_the_namespaces_it_watches() -> None:
    ces = parse_cluster_external_secret(body(namespaces=["team-b"], namespaceSelectors=[{}]))
    selection = select_namespaces(ces.spec, NAMESPACES, frozenset({"team-a"}))
    assert selection.targets == {"team-a"}
    assert "--namespace" in selection.failed["team-b"]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"externalSecretName": "Not_A_Name"}, "spec.externalSecretName"),
        (
            {"externalSecretMetadata": {"labels": {"vaultsync.io/owner": "x"}}},
            "spec.externalSecretMetadata.labels",
        ),
        ({"namespaces": ["a"] * (c.CLUSTER_ES_MAX_NAMESPACES + 1)}, "spec.namespaces"),
        ({"namespaceSelectors": [{}] * (c.CLUSTER_ES_MAX_SELECTORS + 1)}, "spec.namespaceSelectors"),
        ({"refreshTime": "soon"}, "spec.refreshTime"),
        (
            {
                "externalSecretSpec": {
                    "storeRef": {"name": "s"},
                    "data": [{"secretKey": "../x", "remoteRef": {"key": "k"}}],
                }
            },
            "spec.externalSecretSpec.data[0].secretKey",
        ),
    ],
)
def test_a_bad_spec_is_refused_naming_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidSpec) as caught:
        parse_cluster_external_secret(body(**spec))
    assert caught.value.message.startswith(f"{field}:"), caught.value.message


def test_the_child_carries_the_spec_as_written_an_owner_reference_and_the_uid_label() -> None:
    ces = parse_cluster_external_secret(
        body(
            externalSecretName="app-db",
            externalSecretMetadata={"labels": {"team": "x"}, "annotations": {"n": "1"}},
        )
    )
    child = desired_external_secret(ces, "team-a")
    assert child["metadata"]["name"] == "app-db" and child["metadata"]["namespace"] == "team-a"
    assert child["metadata"]["labels"] == {"team": "x", c.LABEL_CLUSTER_EXTERNAL_SECRET: "uid-1"}
    assert child["metadata"]["annotations"] == {"n": "1"}
    assert child["spec"] == ES_SPEC
    assert controller_uid(child) == "uid-1"
    assert (
        controller_uid(
            {
                "metadata": {
                    "ownerReferences": [{**child["metadata"]["ownerReferences"][0], "controller": False}]
                }
            }
        )
        is None
    )


def test_an_unchanged_child_needs_no_write_and_keeps_a_tenants_force_sync() -> None:
    ces = parse_cluster_external_secret(body())
    desired = desired_external_secret(ces, "team-a")
    existing = {**desired, "metadata": {**desired["metadata"], "resourceVersion": "7"}}
    assert replacement(existing, desired) is None
    forced = {**existing, "metadata": {**existing["metadata"], "annotations": {c.ANNOTATION_FORCE_SYNC: "1"}}}
    assert replacement(forced, desired) is None
    drifted = {**forced, "spec": {**ES_SPEC, "refreshInterval": "1s"}}
    fixed = replacement(drifted, desired)
    assert fixed is not None
    assert fixed["spec"] == ES_SPEC
    assert fixed["metadata"]["annotations"] == {c.ANNOTATION_FORCE_SYNC: "1"}
    assert fixed["metadata"]["resourceVersion"] == "7"


def test_the_status_lists_provisioned_and_failed_namespaces() -> None:
    ces = parse_cluster_external_secret(body())
    new = status({}, ces, {"b", "a"}, {"c": "taken"})
    assert new["provisionedNamespaces"] == ["a", "b"]
    assert new["failedNamespaces"] == [{"namespace": "c", "reason": "taken"}]
    assert new["conditions"][0]["reason"] == c.REASON_NAMESPACES_FAILED
    ok = status(new, ces, {"a"}, {})
    assert ok["conditions"][0]["status"] == "True"
    assert material(status(ok, ces, {"a"}, {})) == material(ok)
    assert invalid_status(ok, 4, "spec.x: bad")["conditions"][0]["reason"] == "InvalidSpec"


def test_a_namespace_being_deleted_is_terminating() -> None:
    assert namespace_of({"metadata": {"name": "x"}, "status": {"phase": "Terminating"}}).terminating
    assert not namespace_of({"metadata": {"name": "x", "labels": {"a": "b"}}}).terminating
