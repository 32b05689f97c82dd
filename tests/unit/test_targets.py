"""Which target Secrets a tenant may ask for, and what Merge and deletionPolicy Delete may touch."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from vaultsync import constants as c
from vaultsync.errors import InvalidSpec, ProviderError, SecretNotFound, TargetConflict
from vaultsync.models import parse_external_secret
from vaultsync.providers.base import RemoteRef, RemoteValue
from vaultsync.targets import (
    check_merge_target,
    created_by,
    every_key_gone,
    merged_secret,
    refused_type,
    released_secret,
    reserved_metadata_key,
)

ES, UID = "es", "uid-es"
MARKS = {"vaultsync.io/data-fingerprint": "f1", "vaultsync.io/managed-keys": "token"}


def external_secret(target: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": ES, "namespace": "shop", "uid": UID},
        "spec": {
            "storeRef": {"name": "fake"},
            "target": target,
            "data": [{"secretKey": "token", "remoteRef": {"key": "app"}}],
        },
    }


def refusal(target: dict[str, Any]) -> str:
    with pytest.raises(InvalidSpec) as caught:
        parse_external_secret(external_secret(target))
    return caught.value.message


def secret(
    secret_type: str = "Opaque",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    data: dict[str, str] | None = None,
    **meta: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "target",
            "namespace": "shop",
            "uid": "uid-secret",
            "resourceVersion": "7",
            "labels": labels or {},
            "annotations": annotations or {},
            **meta,
        },
        "type": secret_type,
        "data": data or {},
    }


OURS = {"app.kubernetes.io/managed-by": "vaultsync", "vaultsync.io/external-secret": ES}

# Target type -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret_type", "why"),
    [
        ("kubernetes.io/service-account-token", "ServiceAccount token"),
        ("bootstrap.kubernetes.io/token", "node-bootstrap"),
        ("helm.sh/release.v1", "Helm release"),
        ("helm.sh/release.v2", "kubernetes.io, k8s.io and helm.sh"),
        ("kubernetes.io/future-thing", "kubernetes.io, k8s.io and helm.sh"),
        ("node.k8s.io/x", "kubernetes.io, k8s.io and helm.sh"),
    ],
)
def test_types_that_grant_access_or_belong_to_others_are_refused_naming_the_field(
    secret_type: str, why: str
) -> None:
    message = refusal({"type": secret_type})
    assert message.startswith("spec.target.type: ")
    assert secret_type in message and why in message


@pytest.mark.parametrize(
    "secret_type",
    [
        "Opaque",
        "kubernetes.io/tls",
        "kubernetes.io/dockerconfigjson",
        "kubernetes.io/basic-auth",
        "example.com/x",
    ],
)
def test_ordinary_types_are_allowed(secret_type: str) -> None:
    assert refused_type(secret_type) is None
    assert parse_external_secret(external_secret({"type": secret_type})).spec.target.type == secret_type


# Target name, labels and annotations -------------------------------------------------------------


def test_a_helm_release_name_is_refused() -> None:
    assert refusal({"name": "sh.helm.release.v1.app.v2"}).startswith("spec.target.name: ")


@pytest.mark.parametrize(
    "key",
    [
        "app.kubernetes.io/managed-by",
        "vaultsync.io/external-secret",
        "vaultsync.io/managed-keys",
        "x.vaultsync.io/anything",
        "kubernetes.io/service-account.name",
        "kubernetes.io/service-account.uid",
        "kubectl.kubernetes.io/last-applied-configuration",
        "k8s.io/x",
    ],
)
def test_reserved_label_and_annotation_keys_are_refused(key: str) -> None:
    assert reserved_metadata_key(key)
    assert f"'{key}'" in refusal({"labels": {key: "v"}})
    assert refusal({"labels": {key: "v"}}).startswith("spec.target.labels: ")
    assert refusal({"annotations": {key: "v"}}).startswith("spec.target.annotations: ")


@pytest.mark.parametrize(
    "key", ["app.kubernetes.io/name", "team", "example.com/kubernetes.io", "notvaultsync.io/x"]
)
def test_user_label_keys_are_allowed(key: str) -> None:
    assert not reserved_metadata_key(key)
    parse_external_secret(external_secret({"labels": {key: "v"}, "annotations": {key: "v"}}))


def test_the_helm_owner_label_is_refused() -> None:
    assert "owner=helm" in refusal({"labels": {"owner": "helm"}})


def test_a_refusal_never_quotes_a_label_value() -> None:
    assert "s3cr3t" not in refusal({"labels": {"vaultsync.io/x": "s3cr3t"}})


# Merge -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "secret_type", ["helm.sh/release.v1", "kubernetes.io/tls", "kubernetes.io/service-account-token"]
)
def test_merge_refuses_a_typed_secret_naming_its_type(secret_type: str) -> None:
    with pytest.raises(TargetConflict) as caught:
        check_merge_target(secret(secret_type), ES, UID)
    assert caught.value.message.startswith("spec.target.creationPolicy: ")
    assert repr(secret_type) in caught.value.message


def test_merge_refuses_a_secret_another_controller_manages() -> None:
    owner = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "name": "web",
        "uid": "u",
        "controller": True,
    }
    with pytest.raises(TargetConflict, match="controlled by Certificate 'web'"):
        check_merge_target(secret(ownerReferences=[owner]), ES, UID)


def test_merge_refuses_a_secret_another_external_secret_writes() -> None:
    with pytest.raises(TargetConflict, match="managed by ExternalSecret 'other'"):
        check_merge_target(secret(annotations={"vaultsync.io/merged-by": "other"}), ES, UID)
    labels = {**OURS, "vaultsync.io/external-secret": "other"}
    with pytest.raises(TargetConflict, match="managed by ExternalSecret 'other'"):
        check_merge_target(secret(labels=labels), ES, UID)


def test_merge_accepts_a_foreign_opaque_secret_and_its_own() -> None:
    check_merge_target(secret(labels={"app": "x"}), ES, UID)
    check_merge_target(secret(annotations={"vaultsync.io/merged-by": ES}), ES, UID)
    check_merge_target(secret("kubernetes.io/tls", labels=OURS), ES, UID)


def test_merge_writes_only_its_keys_and_marks_never_type_or_labels() -> None:
    foreign = secret(
        labels={"app.kubernetes.io/managed-by": "Helm", "app": "shop"},
        annotations={"note": "theirs"},
        data={"theirs": "dA==", "token": "b2xk"},
    )
    before = copy.deepcopy(foreign)
    merged = merged_secret(foreign, {"token": "bmV3"}, MARKS, ES)
    assert foreign == before  # the input is not mutated
    assert merged["type"] == "Opaque"
    assert merged["metadata"]["labels"] == before["metadata"]["labels"]
    assert merged["metadata"]["annotations"] == {"note": "theirs", **MARKS, "vaultsync.io/merged-by": ES}
    assert merged["data"] == {"theirs": "dA==", "token": "bmV3"}
    assert merged["metadata"]["resourceVersion"] == "7"


def test_merge_drops_a_key_it_wrote_before_and_keeps_those_of_others() -> None:
    annotations = {"vaultsync.io/merged-by": ES, "vaultsync.io/managed-keys": "old,token"}
    mine = secret(annotations=annotations, data={"theirs": "dA==", "old": "bw==", "token": "dA=="})
    assert merged_secret(mine, {"token": "bmV3"}, MARKS, ES)["data"] == {"theirs": "dA==", "token": "bmV3"}


def test_managed_keys_are_trusted_only_from_this_external_secret() -> None:
    forged = secret(annotations={"vaultsync.io/managed-keys": "theirs"}, data={"theirs": "dA=="})
    assert merged_secret(forged, {"token": "bmV3"}, MARKS, ES)["data"] == {"theirs": "dA==", "token": "bmV3"}


def test_merge_into_a_secret_vaultsync_created_does_not_mark_it_merged() -> None:
    assert created_by(merged_secret(secret(labels=OURS), {"token": "dA=="}, MARKS, ES), ES)


# Removal -----------------------------------------------------------------------------------------


def test_removal_takes_back_only_the_merged_keys_and_marks() -> None:
    merged = merged_secret(
        secret(labels={"app": "shop"}, annotations={"note": "theirs"}, data={"theirs": "dA=="}),
        {"token": "bmV3"},
        MARKS,
        ES,
    )
    released = released_secret(merged, ES)
    assert released is not None
    assert released["data"] == {"theirs": "dA=="}
    assert released["metadata"]["annotations"] == {"note": "theirs"}
    assert released["metadata"]["labels"] == {"app": "shop"}
    assert released["type"] == "Opaque"


def test_removal_touches_nothing_it_did_not_merge() -> None:
    assert released_secret(secret(annotations={"vaultsync.io/managed-keys": "theirs"}), ES) is None
    assert released_secret(secret(annotations={"vaultsync.io/merged-by": "other"}), ES) is None


def test_only_a_secret_vaultsync_created_for_this_external_secret_counts_as_created() -> None:
    assert created_by(secret(labels=OURS), ES)
    assert not created_by(secret(labels=OURS), "other")
    assert not created_by(secret(labels={"vaultsync.io/external-secret": ES}), ES)
    assert not created_by(secret(labels=OURS, annotations={"vaultsync.io/merged-by": ES}), ES)


# deletionPolicy Delete ---------------------------------------------------------------------------


def test_delete_acts_only_when_every_remote_key_is_gone() -> None:
    gone = SecretNotFound("not found")
    present = RemoteValue(b"v", "1")
    assert every_key_gone({RemoteRef("a"): gone, RemoteRef("b"): gone})
    assert not every_key_gone({RemoteRef("a"): gone, RemoteRef("b"): present})
    assert not every_key_gone({RemoteRef("a"): gone, RemoteRef("b"): ProviderError("down")})
    assert not every_key_gone({})


# The CRD's CEL rules and the operator's checks say the same -------------------------------------


def _target_schema() -> dict[str, Any]:
    crd = yaml.safe_load((Path(__file__).resolve().parents[2] / "crds" / "externalsecrets.yaml").read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema["properties"]["spec"]["properties"]["target"]["properties"]


def test_the_crd_refuses_the_types_the_operator_refuses() -> None:
    rule = _target_schema()["type"]["x-kubernetes-validations"][0]["rule"]
    allowed, pattern = rule.split("||")
    assert tuple(re.findall(r"'([^']+)'", allowed)) == c.BUILTIN_SECRET_TYPES
    assert all(d.replace(".", "\\\\.") in pattern for d in c.RESERVED_TYPE_DOMAINS)
    assert all(refused_type(t) is not None for t in c.REFUSED_SECRET_TYPES)


@pytest.mark.parametrize("field", ["labels", "annotations"])
def test_the_crd_refuses_the_metadata_keys_the_operator_refuses(field: str) -> None:
    rule = _target_schema()[field]["x-kubernetes-validations"][0]["rule"]
    assert c.LABEL_MANAGED_BY in rule and c.USER_METADATA_PREFIX in rule
    assert all(d.replace(".", "\\\\.") in rule for d in c.RESERVED_METADATA_DOMAINS)
