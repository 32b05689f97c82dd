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

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client

from tests.e2e.conftest import GROUP, VERSION, Vaultsync, fake_entry
from tests.e2e.workloads import stays
from tests.env import kube
from tests.env.kube import Cluster, KubeApi, bearer_token_api
from tests.env.waiting import eventually

pytestmark = pytest.mark.e2e

TENANT_ACCOUNT = "tenant"
FORCE_SYNC = "vaultsync.io/force-sync"
STORE_VALUE = "admins-only"
ADMITTED_LABEL = "vaultsync.io/test-admitted"
REF = {"data": [{"secretKey": "password", "remoteRef": {"key": "db", "property": "password"}}]}


@dataclass
class Side:
    """One namespace and who acts in it: the tenant through its own token, or an admin."""

    namespace: str
    vs: Vaultsync

    def use(self, store: str, name: str = "stolen") -> None:
        self.vs.external_secret(name, {"storeRef": {"name": store, "kind": "ClusterSecretStore"}, **REF})

    def assert_still_syncing(self, name: str) -> None:
        """Forces a sync and waits until the Secret is written again from this one."""
        token = str(time.time_ns())
        self.vs.patch_external_secret(name, {"metadata": {"annotations": {FORCE_SYNC: token}}})

        def synced_again() -> None:
            status = self.vs.get_external_secret(name).get("status") or {}
            assert status.get("forceSyncHandled") == token, f"status {status}"

        eventually(synced_again, what=f"{self.namespace}/{name} to sync again")
        self.vs.wait_reason(name, "Synced")
        assert self.vs.secret_data(name) == {"password": STORE_VALUE}


def _tenant_api(cluster: Cluster, admin: KubeApi, namespace: str) -> KubeApi:
    """A client authenticated as a ServiceAccount whose Role grants rights only in `namespace`."""
    admin.core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=TENANT_ACCOUNT))
    )
    rules = [
        client.V1PolicyRule(api_groups=[GROUP], resources=["externalsecrets", "secretstores"], verbs=["*"]),
        client.V1PolicyRule(api_groups=[""], resources=["secrets", "configmaps"], verbs=["*"]),
    ]
    admin.rbac.create_namespaced_role(
        namespace, client.V1Role(metadata=client.V1ObjectMeta(name=TENANT_ACCOUNT), rules=rules)
    )
    admin.rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name=TENANT_ACCOUNT),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name=TENANT_ACCOUNT
            ),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name=TENANT_ACCOUNT, namespace=namespace)],
        ),
    )
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[]))
    issued = admin.core.create_namespaced_service_account_token(TENANT_ACCOUNT, namespace, request)
    return bearer_token_api(cluster.kubeconfig, str(issued.status.token))


@pytest.fixture
def tenant(cluster: Cluster, kube_api: KubeApi, namespace: str, install_crds: list[str]) -> Iterator[Side]:
    api = _tenant_api(cluster, kube_api, namespace)
    try:
        yield Side(namespace, Vaultsync(api, namespace))
    finally:
        api.client.close()


@pytest.fixture
def bystander(kube_api: KubeApi, install_crds: list[str]) -> Iterator[Side]:
    name = kube.create_namespace(kube_api, prefix="vs-test-bystander-")
    try:
        yield Side(name, Vaultsync(kube_api, name))
    finally:
        kube.delete_namespace(kube_api, name)


@pytest.fixture
def cluster_store(kube_api: KubeApi, namespace: str) -> Iterator[Callable[..., str]]:
    """`cluster_store(conditions)`: a fake ClusterSecretStore unique to this test; deleted after."""
    created: list[str] = []
    admin = Vaultsync(kube_api, namespace)

    def make(conditions: list[Mapping[str, Any]]) -> str:
        name = f"css-{len(created)}-{namespace}"
        entries = [fake_entry("db", {"password": STORE_VALUE})]
        admin.fake_store(name, entries, cluster=True, conditions=list(conditions))
        created.append(name)
        return name

    yield make
    for name in created:
        kube_api.custom.delete_cluster_custom_object(GROUP, VERSION, "clustersecretstores", name)


@pytest.fixture
def operator(run_operator: Callable[..., Any], tenant: Side, bystander: Side) -> Iterator[Any]:
    with run_operator(
        tenant.namespace, "--namespace", tenant.namespace, "--namespace", bystander.namespace
    ) as running:
        yield running


def _refused(tenant: Side, name: str = "stolen") -> None:
    condition = tenant.vs.wait_reason(name, "StoreNotAllowed")
    assert condition["message"].startswith("spec.storeRef.name"), condition
    assert tenant.namespace in condition["message"]
    assert STORE_VALUE not in str(tenant.vs.get_external_secret(name))

    def nothing_written() -> None:
        assert not tenant.vs.secret_exists(name)

    stays(nothing_written, seconds=2)


def test_a_namespace_no_condition_admits_gets_store_not_allowed_while_the_bystander_syncs(
    tenant: Side, bystander: Side, cluster_store: Callable[..., str], operator: Any
) -> None:
    store = cluster_store(
        [
            {"namespaces": [bystander.namespace]},
            {"namespaceSelector": {"matchLabels": {ADMITTED_LABEL: tenant.namespace}}},
        ]
    )
    bystander.use(store, "theirs")
    bystander.vs.wait_data("theirs", {"password": STORE_VALUE})

    tenant.use(store)

    _refused(tenant)
    bystander.assert_still_syncing("theirs")
    assert STORE_VALUE not in operator.logs()


def test_a_tenant_cannot_label_its_namespace_into_a_selector(
    tenant: Side, bystander: Side, kube_api: KubeApi, cluster_store: Callable[..., str], operator: Any
) -> None:
    store = cluster_store([{"namespaceSelector": {"matchLabels": {ADMITTED_LABEL: "true"}}}])
    tenant.use(store)
    _refused(tenant)

    with pytest.raises(client.ApiException) as refused:
        tenant.vs.api.core.patch_namespace(
            tenant.namespace, {"metadata": {"labels": {ADMITTED_LABEL: "true"}}}
        )
    assert refused.value.status == 403
    labels = kube_api.core.read_namespace(tenant.namespace).metadata.labels or {}
    assert ADMITTED_LABEL not in labels
    tenant.vs.wait_reason("stolen", "StoreNotAllowed")
    assert not tenant.vs.secret_exists("stolen")


def test_a_name_and_a_label_written_as_one_selector_refuse_a_namespace_with_only_the_name(
    tenant: Side, bystander: Side, kube_api: KubeApi, cluster_store: Callable[..., str], operator: Any
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
    bystander.use(store, "theirs")
    bystander.vs.wait_data("theirs", {"password": STORE_VALUE})

    tenant.use(store)  # listed by name, but without the label

    _refused(tenant)
    bystander.assert_still_syncing("theirs")


def test_namespaces_and_a_selector_in_one_condition_admit_a_namespace_matching_either(
    tenant: Side, bystander: Side, cluster_store: Callable[..., str], operator: Any
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
    tenant.use(store, "listed")
    tenant.vs.wait_data("listed", {"password": STORE_VALUE})
    bystander.use(store, "selected-by-nothing")
    _refused(bystander, "selected-by-nothing")
