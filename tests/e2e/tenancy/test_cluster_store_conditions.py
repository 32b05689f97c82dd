"""Attack: a tenant uses a ClusterSecretStore whose `conditions` do not admit its namespace.

A ClusterSecretStore may read with the operator's identity or an admin's credentials, so
its `conditions` are the only thing between a tenant and every secret it can read. The
tenant acts only through its own ServiceAccount (a Role in its namespace: ExternalSecrets,
SecretStores, Secrets); it gets `StoreNotAllowed` and no Secret, cannot label its
namespace into a selector (Namespaces are cluster-scoped), and the bystander namespace
the store does admit keeps syncing throughout.

Conditions mean what External Secrets Operator's mean (docs/api.md): within one entry,
`namespaces` OR `namespaceSelector`; a name AND a label is one selector.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.e2e.conftest import Vaultsync
from tests.e2e.tenancy.conftest import STORE_VALUE, Bystander, TenancyOperators, Tenant
from tests.e2e.workloads import stays
from tests.env.kube import KubeApi

pytestmark = pytest.mark.e2e

ADMITTED_LABEL = "vaultsync.io/test-admitted"
REF = {"data": [{"secretKey": "password", "remoteRef": {"key": "db", "property": "password"}}]}


def use(vs: Vaultsync, store: str, name: str = "stolen") -> None:
    vs.external_secret(name, {"storeRef": {"name": store, "kind": "ClusterSecretStore"}, **REF})


@pytest.fixture
def neighbour(kube_api: KubeApi, bystander: Bystander) -> Vaultsync:
    """The bystander's namespace as its admins use it, for ExternalSecrets of the store under test."""
    return Vaultsync(kube_api, bystander.namespace)


@pytest.fixture
def operator(tenancy_operator: TenancyOperators) -> Iterator[Any]:
    with tenancy_operator() as running:
        yield running


def _refused(vs: Vaultsync, name: str = "stolen") -> None:
    condition = vs.wait_reason(name, "StoreNotAllowed")
    assert condition["message"].startswith("spec.storeRef.name"), condition
    assert vs.namespace in condition["message"]
    assert STORE_VALUE not in str(vs.get_external_secret(name))

    def nothing_written() -> None:
        assert not vs.secret_exists(name)

    stays(nothing_written, seconds=2)


def test_a_namespace_no_condition_admits_gets_store_not_allowed_while_the_bystander_syncs(
    tenant: Tenant,
    bystander: Bystander,
    neighbour: Vaultsync,
    cluster_store: Callable[..., str],
    operator: Any,
) -> None:
    store = cluster_store(
        [
            {"namespaces": [bystander.namespace]},
            {"namespaceSelector": {"matchLabels": {ADMITTED_LABEL: tenant.namespace}}},
        ]
    )
    use(neighbour, store, "theirs")
    neighbour.wait_data("theirs", {"password": STORE_VALUE})

    use(tenant.vs, store)

    _refused(tenant.vs)
    neighbour.wait_reason("theirs", "Synced")
    bystander.assert_still_syncing()
    assert STORE_VALUE not in operator.logs()


def test_a_tenant_cannot_label_its_namespace_into_a_selector(
    tenant: Tenant,
    bystander: Bystander,
    neighbour: Vaultsync,
    kube_api: KubeApi,
    cluster_store: Callable[..., str],
    operator: Any,
) -> None:
    store = cluster_store([{"namespaceSelector": {"matchLabels": {ADMITTED_LABEL: "true"}}}])
    use(tenant.vs, store)
    _refused(tenant.vs)

    with pytest.raises(client.ApiException) as refused:
        tenant.api.core.patch_namespace(tenant.namespace, {"metadata": {"labels": {ADMITTED_LABEL: "true"}}})
    assert refused.value.status == 403
    labels = kube_api.core.read_namespace(tenant.namespace).metadata.labels or {}
    assert ADMITTED_LABEL not in labels
    tenant.vs.wait_reason("stolen", "StoreNotAllowed")
    assert not tenant.vs.secret_exists("stolen")


def test_a_name_and_a_label_written_as_one_selector_refuse_a_namespace_with_only_the_name(
    tenant: Tenant,
    bystander: Bystander,
    neighbour: Vaultsync,
    kube_api: KubeApi,
    cluster_store: Callable[..., str],
    operator: Any,
) -> None:
    """The documented way to require both, since `namespaces` and `namespaceSelector` OR."""
    both = {
        "matchLabels": {ADMITTED_LABEL: "true"},
        "matchExpressions": [
            {
                "key": "kubernetes.io/metadata.name",
                "operator": "In",
                "values": [tenant.namespace, bystander.namespace],
            }
        ],
    }
    store = cluster_store([{"namespaceSelector": both}])
    kube_api.core.patch_namespace(bystander.namespace, {"metadata": {"labels": {ADMITTED_LABEL: "true"}}})
    use(neighbour, store, "theirs")
    neighbour.wait_data("theirs", {"password": STORE_VALUE})

    use(tenant.vs, store)  # listed by name, but without the label

    _refused(tenant.vs)
    neighbour.wait_reason("theirs", "Synced")
    bystander.assert_still_syncing()


def test_namespaces_and_a_selector_in_one_condition_admit_a_namespace_matching_either(
    tenant: Tenant,
    bystander: Bystander,
    neighbour: Vaultsync,
    cluster_store: Callable[..., str],
    operator: Any,
) -> None:
    """ESO's meaning, documented in the CRD: either field suffices (so the tenant here is let in)."""
    store = cluster_store(
        [
            {
                "namespaces": [tenant.namespace],
                "namespaceSelector": {"matchLabels": {ADMITTED_LABEL: "never-set"}},
            }
        ]
    )
    use(tenant.vs, store, "listed")
    tenant.vs.wait_data("listed", {"password": STORE_VALUE})
    use(neighbour, store, "selected-by-nothing")
    _refused(neighbour, "selected-by-nothing")


def test_an_empty_selector_admits_every_namespace_as_documented(
    tenant: Tenant, neighbour: Vaultsync, cluster_store: Callable[..., str], operator: Any
) -> None:
    """`namespaceSelector: {}` is Kubernetes' empty selector: everything (docs/api.md warns)."""
    store = cluster_store([{"namespaceSelector": {}}])
    use(tenant.vs, store, "anyone")
    use(neighbour, store, "anyone")
    tenant.vs.wait_data("anyone", {"password": STORE_VALUE})
    neighbour.wait_data("anyone", {"password": STORE_VALUE})
