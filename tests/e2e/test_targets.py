"""What vaultsync may write, against a real API server: refused target types, Merge that
touches only its own keys, and deletionPolicy Delete that waits for every remote key.

A foreign Secret (Helm's release record, a TLS Secret, a ServiceAccount token) must come
out of a refused Merge exactly as it went in: same resourceVersion, so nobody wrote it.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest
from kubernetes import client

from tests.e2e.conftest import Vaultsync, fake_entry
from tests.env.waiting import eventually

pytestmark = pytest.mark.e2e

# Two refresh cycles of the 1s ExternalSecrets below: long enough to see a write that
# should not happen.
SETTLE_SECONDS = 4.0


def spec(policy: str = "Merge", deletion: str = "Retain", **target: Any) -> dict[str, Any]:
    return {
        "storeRef": {"name": "fake"},
        "refreshInterval": "1s",
        "target": {"name": "target", "creationPolicy": policy, "deletionPolicy": deletion, **target},
        "data": [{"secretKey": "token", "remoteRef": {"key": "app", "property": "token"}}],
    }


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def snapshot(vs: Vaultsync, name: str) -> dict[str, Any]:
    found = vs.secret(name)
    return {
        "resourceVersion": found.metadata.resource_version,
        "type": found.type,
        "labels": found.metadata.labels,
        "annotations": found.metadata.annotations,
        "ownerReferences": found.metadata.owner_references,
        "data": found.data,
    }


def settled(vs: Vaultsync, name: str) -> dict[str, Any]:
    """The Secret once no controller writes it any more (the token controller fills a
    ServiceAccount token Secret just after it is created)."""

    def still() -> dict[str, Any]:
        first = snapshot(vs, name)
        time.sleep(1.0)
        assert snapshot(vs, name) == first, "the Secret is still being written"
        return first

    return eventually(still, what=f"Secret {name} to settle")


def helm_release(vs: Vaultsync) -> client.V1Secret:
    return client.V1Secret(
        metadata=client.V1ObjectMeta(
            name="target",
            labels={"owner": "helm", "name": "shop", "status": "deployed", "version": "1"},
        ),
        type="helm.sh/release.v1",
        data={"release": b64("H4sIAAAAAAAA/forged")},
    )


def tls(vs: Vaultsync) -> client.V1Secret:
    return client.V1Secret(
        metadata=client.V1ObjectMeta(name="target", annotations={"cert-manager.io/certificate-name": "web"}),
        type="kubernetes.io/tls",
        data={"tls.crt": b64("certificate"), "tls.key": b64("private key")},
    )


def service_account_token(vs: Vaultsync) -> client.V1Secret:
    vs.api.core.create_namespaced_service_account(
        vs.namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="builder"))
    )
    return client.V1Secret(
        metadata=client.V1ObjectMeta(
            name="target", annotations={"kubernetes.io/service-account.name": "builder"}
        ),
        type="kubernetes.io/service-account-token",
    )


@pytest.mark.parametrize("foreign", [helm_release, tls, service_account_token])
def test_merge_into_a_typed_foreign_secret_is_refused_and_leaves_it_untouched(
    vs: Vaultsync, operator: Any, foreign: Any
) -> None:
    body = foreign(vs)
    vs.api.core.create_namespaced_secret(vs.namespace, body)
    before = settled(vs, "target")
    vs.fake_store("fake", [fake_entry("app", {"token": "t1"})])
    vs.external_secret("es", spec("Merge", "Delete"))
    condition = vs.wait_reason("es", "TargetConflict")
    assert condition["message"].startswith("spec.target.creationPolicy: ")
    assert repr(body.type) in condition["message"]
    time.sleep(SETTLE_SECONDS)
    assert snapshot(vs, "target") == before
    vs.delete_external_secret("es")
    time.sleep(SETTLE_SECONDS)
    assert snapshot(vs, "target") == before


def test_merge_into_a_foreign_opaque_secret_writes_only_its_keys_and_takes_only_them_back(
    vs: Vaultsync, operator: Any
) -> None:
    labels = {"app": "shop", "app.kubernetes.io/managed-by": "Helm"}
    annotations = {"meta.helm.sh/release-name": "shop", "note": "theirs"}
    vs.api.core.create_namespaced_secret(
        vs.namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="target", labels=labels, annotations=annotations),
            string_data={"theirs": "keep-me"},
        ),
    )
    vs.fake_store("fake", [fake_entry("app", {"token": "t1"})])
    vs.external_secret("es", spec("Merge", "Delete", labels={"team": "x"}, annotations={"team": "x"}))
    vs.wait_data("target", {"theirs": "keep-me", "token": "t1"})
    merged = vs.secret("target")
    assert merged.type == "Opaque"
    assert merged.metadata.labels == labels
    ours = {k: v for k, v in merged.metadata.annotations.items() if k.startswith("vaultsync.io/")}
    assert {k: v for k, v in merged.metadata.annotations.items() if k not in ours} == annotations
    assert set(ours) == {
        "vaultsync.io/data-fingerprint",
        "vaultsync.io/managed-keys",
        "vaultsync.io/merged-by",
    }
    assert ours["vaultsync.io/managed-keys"] == "token"

    # The remote key is gone: Delete takes back the merged key, never the Secret.
    vs.patch_store("fake", {"spec": {"provider": {"fake": {"data": [fake_entry("other", "x")]}}}})
    vs.wait_reason("es", "KeyNotFound", timeout=30)
    vs.wait_data("target", {"theirs": "keep-me"})
    kept = vs.secret("target")
    assert (kept.type, kept.metadata.labels, kept.metadata.annotations) == ("Opaque", labels, annotations)

    # Back again, then the ExternalSecret is deleted: its key goes, the Secret stays.
    vs.patch_store("fake", {"spec": {"provider": {"fake": {"data": [fake_entry("app", {"token": "t2"})]}}}})
    vs.wait_data("target", {"theirs": "keep-me", "token": "t2"})
    vs.delete_external_secret("es")
    vs.wait_data("target", {"theirs": "keep-me"})
    kept = vs.secret("target")
    assert (kept.type, kept.metadata.labels, kept.metadata.annotations) == ("Opaque", labels, annotations)


def test_a_secret_vaultsync_did_not_create_is_never_deleted(vs: Vaultsync, operator: Any) -> None:
    """Merge into a foreign Secret, then switch the ExternalSecret to Owner with deletionPolicy
    Delete: it is not taken over (Merge left no ownership labels) and, once the remote key
    is gone, it is not deleted."""
    vs.api.core.create_namespaced_secret(
        vs.namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name="target"), string_data={"theirs": "x"}),
    )
    vs.fake_store("fake", [fake_entry("app", {"token": "t1"})])
    vs.external_secret("es", spec("Merge", "Retain"))
    vs.wait_data("target", {"theirs": "x", "token": "t1"})
    vs.patch_external_secret(
        "es", {"spec": {"target": {"creationPolicy": "Owner", "deletionPolicy": "Delete"}}}
    )
    condition = vs.wait_reason("es", "TargetConflict")
    assert condition["message"].startswith("spec.target.name: ")
    vs.patch_store("fake", {"spec": {"provider": {"fake": {"data": [fake_entry("other", "x")]}}}})
    vs.wait_reason("es", "KeyNotFound", timeout=30)
    time.sleep(SETTLE_SECONDS)
    assert vs.secret_data("target") == {"theirs": "x", "token": "t1"}
    assert not vs.secret("target").metadata.owner_references


def test_delete_keeps_the_secret_while_any_remote_key_remains(vs: Vaultsync, operator: Any) -> None:
    body = spec("Owner", "Delete")
    body["data"] = [
        {"secretKey": "first", "remoteRef": {"key": "one"}},
        {"secretKey": "second", "remoteRef": {"key": "two"}},
    ]
    vs.fake_store("fake", [fake_entry("one", "v1"), fake_entry("two", "v2")])
    vs.external_secret("es", body)
    vs.wait_data("target", {"first": "v1", "second": "v2"})

    vs.patch_store("fake", {"spec": {"provider": {"fake": {"data": [fake_entry("two", "v2")]}}}})
    condition = vs.wait_reason("es", "KeyNotFound", timeout=30)
    time.sleep(SETTLE_SECONDS)
    assert vs.secret_data("target") == {"first": "v1", "second": "v2"}
    assert condition["message"].startswith("spec.data[0].remoteRef.key: ")
    assert "every remote key" in condition["message"]

    vs.patch_store("fake", {"spec": {"provider": {"fake": {"data": [fake_entry("three", "x")]}}}})
    eventually(lambda: _gone(vs, "target"), what="the Secret to be deleted once every key is gone")


def _gone(vs: Vaultsync, name: str) -> None:
    assert not vs.secret_exists(name), f"Secret {name} still exists"


def test_a_hand_edit_of_a_merged_key_is_restored_at_the_next_refresh(vs: Vaultsync, operator: Any) -> None:
    """A Merge target carries no vaultsync labels, so the Secret watch does not see it: each
    refresh reads it instead of trusting the watch."""
    vs.api.core.create_namespaced_secret(
        vs.namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name="target"), string_data={"theirs": "x"}),
    )
    vs.fake_store("fake", [fake_entry("app", {"token": "t1"})])
    vs.external_secret("es", spec("Merge"))
    vs.wait_data("target", {"theirs": "x", "token": "t1"})
    time.sleep(SETTLE_SECONDS)  # a few refreshes that find the target as written
    vs.api.core.patch_namespaced_secret("target", vs.namespace, {"data": {"token": b64("edited")}})
    vs.wait_data("target", {"theirs": "x", "token": "t1"}, timeout=20)
