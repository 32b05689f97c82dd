"""Attack: a tenant uses vaultsync's write rights on Secrets to mint, forge or destroy Secrets.

The tenant may only create ExternalSecrets and SecretStores (and, here, Secrets) in its own
namespace. Through the operator it tries to get a long-lived ServiceAccount token minted
(target type or `kubernetes.io/service-account.name` annotation), to forge vaultsync's or
Helm's ownership marks, to write into (and later delete or re-type) Secrets that belong to
Helm or to the platform through `creationPolicy: Merge`, and to have a Secret it did not
create deleted through `deletionPolicy: Delete`. Each attempt must be refused naming the
field, leave the foreign Secret exactly as it was, and leave the bystander syncing.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from tests.e2e.conftest import fake_entry
from tests.e2e.tenancy.conftest import Bystander, Tenant
from tests.env.kube import KubeApi
from tests.env.waiting import eventually

pytestmark = pytest.mark.e2e

SETTLE_SECONDS = 4.0  # a few refreshes of the 1s ExternalSecrets below


def external_secret(**target: Any) -> dict[str, Any]:
    return {
        "storeRef": {"name": "fake"},
        "refreshInterval": "1s",
        "target": {"name": "target", **target},
        "data": [{"secretKey": "token", "remoteRef": {"key": "app", "property": "token"}}],
    }


def refused(tenant: Tenant, spec: dict[str, Any]) -> str:
    with pytest.raises(ApiException) as caught:
        tenant.vs.external_secret("attack", spec)
    assert caught.value.status == 422
    return str(caught.value.body)


def snapshot(api: KubeApi, namespace: str, name: str) -> tuple[Any, ...]:
    found = api.core.read_namespaced_secret(name, namespace)
    meta = found.metadata
    return (meta.resource_version, found.type, meta.labels, meta.annotations, found.data)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("target", "field"),
    [
        ({"type": "kubernetes.io/service-account-token"}, "spec.target.type"),
        (
            {
                "type": "kubernetes.io/service-account-token",
                "annotations": {"kubernetes.io/service-account.name": "app-team"},
            },
            "spec.target.type",
        ),
        ({"annotations": {"kubernetes.io/service-account.name": "app-team"}}, "spec.target.annotations"),
        ({"type": "bootstrap.kubernetes.io/token"}, "spec.target.type"),
        ({"type": "helm.sh/release.v1", "labels": {"name": "shop"}}, "spec.target.type"),
        ({"name": "sh.helm.release.v1.shop.v9", "labels": {"owner": "helm"}}, "spec.target.name"),
        ({"labels": {"app.kubernetes.io/managed-by": "vaultsync"}}, "spec.target.labels"),
        ({"labels": {"vaultsync.io/external-secret": "bystander"}}, "spec.target.labels"),
        ({"annotations": {"vaultsync.io/merged-by": "someone"}}, "spec.target.annotations"),
    ],
    ids=[
        "sa-token-type",
        "sa-token-type-and-annotation",
        "sa-annotation",
        "bootstrap-token",
        "helm-release-type",
        "helm-release-name",
        "managed-by-label",
        "owner-label",
        "merged-by-annotation",
    ],
)
def test_targets_that_mint_or_forge_are_refused_at_apply(
    tenant: Tenant, bystander: Bystander, tenancy_operator: Any, target: dict[str, Any], field: str
) -> None:
    tenant.vs.fake_store("fake", [fake_entry("app", {"token": "t1"})])
    with tenancy_operator():
        message = refused(tenant, external_secret(**target))
        assert f"{field}: " in message
        bystander.assert_still_syncing()
    tokens = tenant.api.core.list_namespaced_secret(
        tenant.namespace, field_selector="type=kubernetes.io/service-account-token"
    )
    assert tokens.items == []


def helm_release() -> client.V1Secret:
    return client.V1Secret(
        metadata=client.V1ObjectMeta(
            name="target", labels={"owner": "helm", "name": "shop", "status": "deployed", "version": "1"}
        ),
        type="helm.sh/release.v1",
        data={"release": b64("H4sIAAAAAAAA/release")},
    )


def tls() -> client.V1Secret:
    return client.V1Secret(
        metadata=client.V1ObjectMeta(name="target", annotations={"cert-manager.io/certificate-name": "web"}),
        type="kubernetes.io/tls",
        data={"tls.crt": b64("certificate"), "tls.key": b64("private key")},
    )


@pytest.mark.parametrize("foreign", [helm_release, tls], ids=["helm-release", "tls"])
def test_merge_into_a_platform_secret_is_refused_and_never_touches_it(
    tenant: Tenant, bystander: Bystander, tenancy_operator: Any, kube_api: KubeApi, foreign: Any
) -> None:
    """Helm or cert-manager (the admin's client here) wrote the Secret; the tenant points a
    Merge with deletionPolicy Delete at it, then deletes the remote key and the ExternalSecret."""
    kube_api.core.create_namespaced_secret(tenant.namespace, foreign())
    before = snapshot(kube_api, tenant.namespace, "target")
    tenant.vs.fake_store("fake", [fake_entry("app", {"token": "t1"})])
    with tenancy_operator():
        tenant.vs.external_secret("attack", external_secret(creationPolicy="Merge", deletionPolicy="Delete"))
        condition = tenant.vs.wait_reason("attack", "TargetConflict")
        assert condition["message"].startswith("spec.target.creationPolicy: ")
        tenant.vs.patch_store("fake", {"spec": {"provider": {"fake": {"data": [fake_entry("x", "y")]}}}})
        tenant.vs.wait_reason("attack", "KeyNotFound", timeout=30)
        tenant.vs.delete_external_secret("attack")
        time.sleep(SETTLE_SECONDS)
        assert snapshot(kube_api, tenant.namespace, "target") == before
        bystander.assert_still_syncing()


def test_merge_then_owner_with_delete_cannot_delete_a_platform_secret(
    tenant: Tenant, bystander: Bystander, tenancy_operator: Any, kube_api: KubeApi
) -> None:
    """The two-step takeover: Merge into the platform's Secret, switch to Owner with
    deletionPolicy Delete, then make the remote key vanish."""
    labels = {"app.kubernetes.io/managed-by": "platform"}
    kube_api.core.create_namespaced_secret(
        tenant.namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="target", labels=labels, annotations={"owner": "platform"}),
            string_data={"theirs": "x"},
        ),
    )
    tenant.vs.fake_store("fake", [fake_entry("app", {"token": "t1"})])
    with tenancy_operator():
        tenant.vs.external_secret("attack", external_secret(creationPolicy="Merge"))
        tenant.vs.wait_data("target", {"theirs": "x", "token": "t1"})
        merged = kube_api.core.read_namespaced_secret("target", tenant.namespace)
        assert merged.metadata.labels == labels
        tenant.vs.patch_external_secret(
            "attack", {"spec": {"target": {"creationPolicy": "Owner", "deletionPolicy": "Delete"}}}
        )
        tenant.vs.wait_reason("attack", "TargetConflict")
        tenant.vs.patch_store("fake", {"spec": {"provider": {"fake": {"data": [fake_entry("x", "y")]}}}})
        tenant.vs.wait_reason("attack", "KeyNotFound", timeout=30)
        time.sleep(SETTLE_SECONDS)
        kept = kube_api.core.read_namespaced_secret("target", tenant.namespace)
        assert (kept.type, kept.metadata.labels, kept.metadata.owner_references) == ("Opaque", labels, None)
        assert kept.metadata.annotations["owner"] == "platform"
        assert set(kept.data) == {"theirs", "token"}
        bystander.assert_still_syncing()


def test_one_vanished_key_does_not_delete_the_secret(
    tenant: Tenant, bystander: Bystander, tenancy_operator: Any
) -> None:
    """A wrong path or a missing permission looks like not-found: with deletionPolicy Delete
    and two keys, one answering not-found keeps the Secret whole; both gone deletes it."""
    spec = external_secret(deletionPolicy="Delete")
    spec["data"] = [
        {"secretKey": "first", "remoteRef": {"key": "one"}},
        {"secretKey": "second", "remoteRef": {"key": "two"}},
    ]
    tenant.vs.fake_store("fake", [fake_entry("one", "v1"), fake_entry("two", "v2")])
    with tenancy_operator():
        tenant.vs.external_secret("app", spec)
        tenant.vs.wait_data("target", {"first": "v1", "second": "v2"})
        tenant.vs.patch_store("fake", {"spec": {"provider": {"fake": {"data": [fake_entry("one", "v1")]}}}})
        condition = tenant.vs.wait_reason("app", "KeyNotFound", timeout=30)
        assert condition["message"].startswith("spec.data[1].remoteRef.key: ")
        time.sleep(SETTLE_SECONDS)
        assert tenant.vs.secret_data("target") == {"first": "v1", "second": "v2"}
        tenant.vs.patch_store("fake", {"spec": {"provider": {"fake": {"data": [fake_entry("x", "y")]}}}})
        eventually(
            lambda: _assert_gone(tenant, "target"), what="the Secret to go once every remote key is gone"
        )
        bystander.assert_still_syncing()


def _assert_gone(tenant: Tenant, name: str) -> None:
    assert not tenant.vs.secret_exists(name), f"Secret {name} still exists"
