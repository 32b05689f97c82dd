"""Fixtures of the tenant-attack suite: a hostile tenant, a bystander, a recording endpoint, the operator.

Each attack module plays one tenant against the operator as a platform would run it: the
tenant acts only through its own ServiceAccount token (`tenant.api`, `tenant.vs`), another
team's namespace must keep syncing (`bystander.assert_still_syncing()`), a server the tenant
"owns" records what the operator sends it (`recording_server`), and the operator runs with
canary cloud credentials in its environment (`tenancy_operator`): if any of them ever shows up
in the operator's log, at the recording server, or at a default cloud endpoint, the test
fails at exit. Default endpoints of the SDKs (AWS, Azure managed identity and authority, Vault)
point at a local sink, so a missing fix never sends the canaries off this machine.

A test in which a ClusterSecretStore is meant to use the operator's identity names its
endpoint (a real server such as moto), or replaces the sink with `env={"AWS_ENDPOINT_URL": ...}`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest

from tests.e2e.conftest import GROUP, VERSION, Vaultsync, fake_entry
from tests.e2e.tenancy.actors import Bystander, Tenant, create_bystander, create_tenant
from tests.e2e.tenancy.recording import RecordingServer
from tests.env import kube
from tests.env.kube import Cluster, KubeApi
from tests.env.operator import OperatorProcess, RunOperator

__all__ = ["Bystander", "RecordingServer", "Tenant"]

# The operator's own identity, as a cloud would give it: canaries that must never leave it.
CANARY_AWS_ACCESS_KEY_ID = "AKIACANARYTENANCY001"
CANARY_AWS_SECRET_ACCESS_KEY = "CanaryAwsSecretAccessKeyTenancySuite0001"
CANARY_AWS_SESSION_TOKEN = "CanaryAwsSessionTokenTenancySuite0001"
CANARY_VAULT_TOKEN = "hvs.CanaryVaultTokenTenancySuite0001"
CANARY_AZURE_CLIENT_SECRET = "CanaryAzureClientSecretTenancySuite0001"
CANARY_AZURE_IDENTITY_HEADER = "CanaryAzureIdentityHeaderTenancySuite0001"
CANARY_VALUES = (
    CANARY_AWS_ACCESS_KEY_ID,
    CANARY_AWS_SECRET_ACCESS_KEY,
    CANARY_AWS_SESSION_TOKEN,
    CANARY_VAULT_TOKEN,
    CANARY_AZURE_CLIENT_SECRET,
    CANARY_AZURE_IDENTITY_HEADER,
)
# Not secret, but needed for Azure's environment credential to be complete (and so usable).
CANARY_AZURE_TENANT_ID = "00000000-0000-0000-0000-0000000ca4a1"
CANARY_AZURE_CLIENT_ID = "00000000-0000-0000-0000-0000000ca4a2"
CANARY_ENV = {
    "AWS_ACCESS_KEY_ID": CANARY_AWS_ACCESS_KEY_ID,
    "AWS_SECRET_ACCESS_KEY": CANARY_AWS_SECRET_ACCESS_KEY,
    "AWS_SESSION_TOKEN": CANARY_AWS_SESSION_TOKEN,
    "VAULT_TOKEN": CANARY_VAULT_TOKEN,
    "AZURE_TENANT_ID": CANARY_AZURE_TENANT_ID,
    "AZURE_CLIENT_ID": CANARY_AZURE_CLIENT_ID,
    "AZURE_CLIENT_SECRET": CANARY_AZURE_CLIENT_SECRET,
    "IDENTITY_HEADER": CANARY_AZURE_IDENTITY_HEADER,
}
# What `cluster_store`'s ClusterSecretStores hold: a value only admitted namespaces may read.
STORE_VALUE = "admins-only"
# Harmless before the fake provider became opt-in, required after.
FAKE_PROVIDER_ENV = {"VAULTSYNC_ENABLE_FAKE_PROVIDER": "true"}
# Tenants meet the production refresh floor, not the 1 s the rest of the suite runs with.
PRODUCTION_FLOOR_ENV = {"VAULTSYNC_MIN_REFRESH_INTERVAL": "10s"}


def sink_env(sink_url: str) -> dict[str, str]:
    """Where each SDK goes when a store names no endpoint: the local sink, never the internet.

    Azure's authority must be https; the sink speaks plain HTTP, so such a login fails at the
    TLS handshake before any credential is sent.
    """
    return {
        "AWS_ENDPOINT_URL": sink_url,
        "AWS_EC2_METADATA_DISABLED": "true",
        "IDENTITY_ENDPOINT": f"{sink_url}/azure-managed-identity",
        "AZURE_AUTHORITY_HOST": sink_url.replace("http://", "https://", 1),
        "VAULT_ADDR": sink_url,
    }


def assert_no_canary(text: str, where: str) -> None:
    """Fail naming the first canary found in `text`; the value itself is not repeated."""
    for index, value in enumerate(CANARY_VALUES):
        if value in text:
            pytest.fail(f"CANARY_VALUES[{index}] appears in {where}", pytrace=False)


@pytest.fixture
def cluster_store(kube_api: KubeApi, tenant: Tenant) -> Iterator[Callable[..., str]]:
    """`cluster_store(conditions)`: a fake ClusterSecretStore unique to this test; deleted after."""
    created: list[str] = []
    admin = Vaultsync(kube_api, tenant.namespace)

    def make(conditions: list[Mapping[str, Any]]) -> str:
        name = f"css-{len(created)}-{tenant.namespace}"
        entries = [fake_entry("db", {"password": STORE_VALUE})]
        admin.fake_store(name, entries, cluster=True, conditions=list(conditions))
        created.append(name)
        return name

    yield make
    for name in created:
        kube_api.custom.delete_cluster_custom_object(GROUP, VERSION, "clustersecretstores", name)


@pytest.fixture
def tenant(cluster: Cluster, kube_api: KubeApi, install_crds: list[str]) -> Iterator[Tenant]:
    """A hostile app team: a namespace it may act in, and clients holding only its token."""
    found = create_tenant(kube_api, cluster.kubeconfig)
    yield found
    found.api.client.close()
    kube.delete_namespace(kube_api, found.namespace)


@pytest.fixture
def bystander(kube_api: KubeApi, install_crds: list[str]) -> Iterator[Bystander]:
    """Another team's namespace with a fake-store ExternalSecret that must keep syncing."""
    found = create_bystander(kube_api)
    yield found
    kube.delete_namespace(kube_api, found.namespace)


@pytest.fixture
def recording_server() -> Iterator[RecordingServer]:
    """A plain-HTTP endpoint the tenant controls; no canary may ever reach it."""
    server = RecordingServer()
    yield server
    server.close()
    assert_no_canary(server.received_text(), f"a request to the tenant's server {server.url}")


@pytest.fixture
def tls_recording_server() -> Iterator[RecordingServer]:
    """The same over TLS (self-signed; `.ca_bundle` for a store's caBundle), for https-only fields."""
    server = RecordingServer(tls=True)
    yield server
    server.close()
    assert_no_canary(server.received_text(), f"a request to the tenant's server {server.url}")


class TenancyOperators:
    """`with tenancy_operator(*extra_args, env={...}) as op:` runs the operator for the tenant and
    the bystander, with the canary identity in its environment; `.sink` records what reached
    the SDKs' default endpoints."""

    def __init__(
        self,
        run_operator: RunOperator,
        operator_namespace: str,
        watched: Iterable[str],
        sink: RecordingServer,
        statuses: Callable[[], str],
    ) -> None:
        self._run_operator = run_operator
        self.operator_namespace = operator_namespace
        self.watched = tuple(watched)
        self.sink = sink
        self._statuses = statuses

    def __call__(
        self, *extra_args: str, env: Mapping[str, str] | None = None
    ) -> AbstractContextManager[OperatorProcess]:
        return self._run(extra_args, env or {})

    @contextmanager
    def _run(self, extra_args: tuple[str, ...], env: Mapping[str, str]) -> Iterator[OperatorProcess]:
        merged = {**FAKE_PROVIDER_ENV, **PRODUCTION_FLOOR_ENV, **sink_env(self.sink.url), **CANARY_ENV, **env}
        namespaces = [arg for namespace in self.watched for arg in ("--namespace", namespace)]
        with self._run_operator(self.operator_namespace, *namespaces, *extra_args, env=merged) as operator:
            yield operator
        # Reached only when the test's block succeeded: its own failure is the one to show.
        assert_no_canary(operator.logs(), f"the operator's log ({operator.log_path})")
        assert_no_canary(self.sink.received_text(), "a request to a default cloud endpoint (the sink)")
        assert_no_canary(self._statuses(), "the Events, store or ExternalSecret statuses")


@pytest.fixture
def tenancy_operator(
    run_operator: RunOperator, kube_api: KubeApi, tenant: Tenant, bystander: Bystander
) -> Iterator[TenancyOperators]:
    """Factory of operator runs watching the tenant's and the bystander's namespaces.

    The operator keeps its HMAC key in a namespace of its own, out of the tenant's reach.
    """
    operator_namespace = kube.create_namespace(kube_api, prefix="vs-operator-")
    sink = RecordingServer()
    watched = (tenant.namespace, bystander.namespace)
    yield TenancyOperators(
        run_operator, operator_namespace, watched, sink, lambda: _visible_state(kube_api, watched)
    )
    sink.close()
    kube.delete_namespace(kube_api, operator_namespace)


def _visible_state(api: KubeApi, namespaces: Iterable[str]) -> str:
    """What tenants can read of the operator's reports: Events and the statuses it wrote."""
    found: list[Any] = []
    for namespace in namespaces:
        found += [(e.reason, e.message) for e in api.core.list_namespaced_event(namespace).items]
        for plural in ("secretstores", "externalsecrets"):
            listed = api.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)
            found += [item.get("status") for item in listed["items"]]
    return json.dumps(found)
