"""Attack: a tenant uses what a ClusterExternalSecret or another store could give it.

A ClusterExternalSecret is cluster-scoped: only cluster admins write it (the tenant's Role
cannot). What it provisions is an ordinary ExternalSecret in each namespace, synced with that
namespace's permissions: a ClusterSecretStore that does not admit the tenant's namespace gives
the tenant `StoreNotAllowed` and no Secret, whoever declared the ExternalSecret. The tenant can
squat the generated name (only its own namespace fails, its object untouched) and edit the
provisioned ExternalSecret (it is put back). And a tenant naming a store per entry
(`sourceRef.storeRef`) gets exactly the permissions it has for `spec.storeRef`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.e2e.conftest import GROUP, VERSION, Vaultsync, fake_entry
from tests.e2e.tenancy.conftest import STORE_VALUE, Bystander, TenancyOperators, Tenant
from tests.e2e.workloads import stays
from tests.env.kube import KubeApi
from tests.env.waiting import eventually

pytestmark = pytest.mark.e2e

CHILD = "platform-db"
DATA = [{"secretKey": "password", "remoteRef": {"key": "db", "property": "password"}}]


@pytest.fixture
def operator(tenancy_operator: TenancyOperators) -> Iterator[Any]:
    with tenancy_operator() as running:
        yield running


@pytest.fixture
def declare(kube_api: KubeApi) -> Iterator[Callable[..., str]]:
    """`declare(store, namespaces)`: a ClusterExternalSecret, as a cluster admin writes it."""
    created: list[str] = []

    def make(store: str, namespaces: list[str]) -> str:
        name = f"ces-{uuid.uuid4().hex[:8]}"
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ClusterExternalSecret",
            "metadata": {"name": name},
            "spec": {
                "externalSecretName": CHILD,
                "namespaces": namespaces,
                "refreshTime": "5s",
                "externalSecretSpec": {
                    "storeRef": {"name": store, "kind": "ClusterSecretStore"},
                    "refreshInterval": "1h",
                    "data": DATA,
                },
            },
        }
        kube_api.custom.create_cluster_custom_object(GROUP, VERSION, "clusterexternalsecrets", body)
        created.append(name)
        return name

    yield make
    for name in created:
        kube_api.custom.delete_cluster_custom_object(GROUP, VERSION, "clusterexternalsecrets", name)


def status_of(api: KubeApi, name: str) -> dict[str, Any]:
    found = api.custom.get_cluster_custom_object(GROUP, VERSION, "clusterexternalsecrets", name)
    return dict(found.get("status") or {})


def test_a_cluster_external_secret_reaches_a_tenant_only_through_stores_its_namespace_may_use(
    tenant: Tenant,
    bystander: Bystander,
    kube_api: KubeApi,
    cluster_store: Callable[..., str],
    declare: Callable[..., str],
    operator: Any,
) -> None:
    store = cluster_store([{"namespaces": [bystander.namespace]}])
    name = declare(store, [tenant.namespace, bystander.namespace])

    # Both namespaces get the ExternalSecret; only the admitted one gets the Secret.
    def provisioned() -> None:
        status = status_of(kube_api, name)
        assert status.get("provisionedNamespaces") == sorted([tenant.namespace, bystander.namespace]), status

    eventually(provisioned, what="both namespaces to be provisioned", timeout=90)
    Vaultsync(kube_api, bystander.namespace).wait_data(CHILD, {"password": STORE_VALUE})
    condition = tenant.vs.wait_reason(CHILD, "StoreNotAllowed")
    assert condition["message"].startswith("spec.storeRef.name: ClusterSecretStore"), condition
    assert not tenant.vs.secret_exists(CHILD)

    # The tenant points the provisioned ExternalSecret elsewhere: it is put back as declared.
    tenant.vs.patch_external_secret(CHILD, {"spec": {"refreshInterval": "1s", "storeRef": {"name": "mine"}}})

    def restored() -> None:
        spec = tenant.vs.get_external_secret(CHILD)["spec"]
        assert spec["storeRef"]["name"] == store and spec["refreshInterval"] == "1h", spec

    eventually(restored, what="the tenant's edit to be undone", timeout=60)

    # Only cluster admins declare: the tenant's token cannot create a ClusterExternalSecret.
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ClusterExternalSecret", "metadata": {"name": "mine"}}
    with pytest.raises(client.ApiException) as refused:
        tenant.api.custom.create_cluster_custom_object(GROUP, VERSION, "clusterexternalsecrets", body)
    assert refused.value.status == 403
    assert not tenant.vs.secret_exists(CHILD)
    bystander.assert_still_syncing()


def test_a_tenant_squatting_the_generated_name_fails_only_its_namespace(
    tenant: Tenant,
    bystander: Bystander,
    kube_api: KubeApi,
    cluster_store: Callable[..., str],
    declare: Callable[..., str],
    operator: Any,
) -> None:
    store = cluster_store([])  # admits every namespace
    tenant.vs.fake_store("mine", [fake_entry("db", {"password": "tenant"})])
    tenant.vs.external_secret(CHILD, {"storeRef": {"name": "mine"}, "data": DATA})
    tenant.vs.wait_data(CHILD, {"password": "tenant"})
    tenant.vs.wait_reason(CHILD, "Synced")  # its own first status write, after the Secret's
    before = tenant.vs.get_external_secret(CHILD)

    name = declare(store, [tenant.namespace, bystander.namespace])

    def reported() -> dict[str, Any]:
        status = status_of(kube_api, name)
        assert status.get("provisionedNamespaces") == [bystander.namespace], status
        assert [f["namespace"] for f in status.get("failedNamespaces") or []] == [tenant.namespace], status
        return status

    status = eventually(reported, what="the squatted namespace to be failed", timeout=90)
    assert (
        "already exists and is not owned by this ClusterExternalSecret"
        in status["failedNamespaces"][0]["reason"]
    )
    Vaultsync(kube_api, bystander.namespace).wait_data(CHILD, {"password": STORE_VALUE})

    def untouched() -> None:
        now = tenant.vs.get_external_secret(CHILD)
        assert now["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
        assert tenant.vs.secret_data(CHILD) == {"password": "tenant"}

    stays(untouched, seconds=8)
    bystander.assert_still_syncing()


def test_a_source_ref_gives_a_tenant_no_store_its_namespace_may_not_use(
    tenant: Tenant,
    bystander: Bystander,
    cluster_store: Callable[..., str],
    operator: Any,
) -> None:
    closed = cluster_store([{"namespaces": [bystander.namespace]}])
    tenant.vs.fake_store("mine", [fake_entry("db", {"password": "tenant"})])
    tenant.vs.external_secret(
        "stolen",
        {
            "storeRef": {"name": "mine"},
            "data": [
                DATA[0],
                {
                    **DATA[0],
                    "secretKey": "theirs",
                    "sourceRef": {"storeRef": {"name": closed, "kind": "ClusterSecretStore"}},
                },
            ],
        },
    )
    condition = tenant.vs.wait_reason("stolen", "StoreNotAllowed")
    assert condition["message"].startswith(
        f"spec.data[1].sourceRef.storeRef.name: ClusterSecretStore {closed!r}"
    )
    assert STORE_VALUE not in str(tenant.vs.get_external_secret("stolen"))

    def nothing_written() -> None:
        assert not tenant.vs.secret_exists("stolen")

    stays(nothing_written, seconds=3)
    bystander.assert_still_syncing()
