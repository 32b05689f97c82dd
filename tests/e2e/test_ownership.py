"""Who owns the Secret: Owner deletes it with the ExternalSecret, Orphan keeps it, Merge shares it."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from tests.e2e.conftest import Vaultsync, fake_entry
from tests.env.waiting import eventually

pytestmark = pytest.mark.e2e


def simple(policy: str, deletion: str = "Retain", name: str = "target") -> dict[str, Any]:
    return {
        "storeRef": {"name": "fake"},
        "refreshInterval": "2s",
        "target": {"name": name, "creationPolicy": policy, "deletionPolicy": deletion},
        "data": [{"secretKey": "token", "remoteRef": {"key": "app", "property": "token"}}],
    }


def test_owner_secret_is_deleted_with_its_external_secret(vs: Vaultsync, operator: Any) -> None:
    vs.fake_store("fake", [fake_entry("app", {"token": "t1"})])
    vs.external_secret("es", simple("Owner"))
    vs.wait_data("target", {"token": "t1"})
    vs.delete_external_secret("es")
    eventually(lambda: _gone(vs, "target"), what="the owned Secret to be garbage-collected")


def test_orphan_secret_outlives_its_external_secret(vs: Vaultsync, operator: Any) -> None:
    vs.fake_store("fake", [fake_entry("app", {"token": "t1"})])
    vs.external_secret("es", simple("Orphan"))
    vs.wait_data("target", {"token": "t1"})
    assert not vs.secret("target").metadata.owner_references
    vs.delete_external_secret("es")
    eventually(lambda: _es_gone(vs, "es"), what="the ExternalSecret to be deleted")
    assert vs.secret_data("target") == {"token": "t1"}


def test_merge_writes_its_keys_and_keeps_the_others_and_takes_them_back(vs: Vaultsync, operator: Any) -> None:
    vs.api.core.create_namespaced_secret(
        vs.namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name="target"), string_data={"mine": "keep-me"}),
    )
    vs.fake_store("fake", [fake_entry("app", {"token": "t1"})])
    vs.external_secret("es", simple("Merge"))
    vs.wait_data("target", {"mine": "keep-me", "token": "t1"})
    vs.delete_external_secret("es")
    vs.wait_data("target", {"mine": "keep-me"})


def test_merge_into_a_missing_secret_waits_with_a_clear_reason(vs: Vaultsync, operator: Any) -> None:
    vs.fake_store("fake", [fake_entry("app", {"token": "t1"})])
    vs.external_secret("es", simple("Merge"))
    condition = vs.wait_reason("es", "TargetConflict")
    assert "spec.target.creationPolicy" in condition["message"]
    assert not vs.secret_exists("target")


def test_a_secret_vaultsync_did_not_create_is_never_taken_over(vs: Vaultsync, operator: Any) -> None:
    vs.api.core.create_namespaced_secret(
        vs.namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name="target"), string_data={"theirs": "x"}),
    )
    vs.fake_store("fake", [fake_entry("app", {"token": "t1"})])
    vs.external_secret("es", simple("Owner"))
    condition = vs.wait_reason("es", "TargetConflict")
    assert "spec.target.name" in condition["message"]
    assert vs.secret_data("target") == {"theirs": "x"}


def test_deletion_policy_delete_removes_the_secret_when_the_remote_key_is_gone(
    vs: Vaultsync, operator: Any
) -> None:
    vs.fake_store("fake", [fake_entry("app", {"token": "t1"})])
    vs.external_secret("es", simple("Owner", "Delete"))
    vs.wait_data("target", {"token": "t1"})
    vs.patch_store("fake", {"spec": {"provider": {"fake": {"data": [fake_entry("other", "x")]}}}})
    vs.wait_reason("es", "KeyNotFound", timeout=30)
    eventually(lambda: _gone(vs, "target"), what="the Secret to be deleted")


def test_deletion_policy_retain_keeps_the_secret_when_the_remote_key_is_gone(
    vs: Vaultsync, operator: Any
) -> None:
    vs.fake_store("fake", [fake_entry("app", {"token": "t1"})])
    vs.external_secret("es", simple("Owner", "Retain"))
    vs.wait_data("target", {"token": "t1"})
    vs.patch_store("fake", {"spec": {"provider": {"fake": {"data": [fake_entry("other", "x")]}}}})
    vs.wait_reason("es", "KeyNotFound", timeout=30)
    assert vs.secret_data("target") == {"token": "t1"}


def _gone(vs: Vaultsync, name: str) -> None:
    assert not vs.secret_exists(name), f"Secret {name} still exists"


def _es_gone(vs: Vaultsync, name: str) -> None:
    try:
        vs.get_external_secret(name)
    except client.ApiException as exc:
        assert exc.status == 404
        return
    raise AssertionError(f"ExternalSecret {name} still exists")
