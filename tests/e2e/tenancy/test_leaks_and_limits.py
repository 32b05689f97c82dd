"""A tenant attacks through sizes and intervals, and fishes for names out of remote values.

Each test runs the operator as the platform would (`tenancy_operator`: the tenant's and a
bystander's namespaces, canary cloud credentials in its environment), plays one attack
through the tenant's own token, and searches what the operator emitted (its log, the
ExternalSecrets' status, the namespace's Events) for the values involved:

- a 5 ms refreshInterval is raised to the 10 s floor: the vault is not hammered;
- an absurd refreshInterval is refused at apply, naming the field;
- a thousand `data` entries, or too many target labels, are refused by the CRD;
- a remote JSON whose property name is itself a secret never shows that name in full;
- a value served from the shared cache leaves an audit line naming the tenant's read.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from kubernetes.client import ApiException

from tests.e2e.conftest import Vaultsync, fake_entry
from tests.e2e.tenancy.conftest import Bystander, TenancyOperators, Tenant
from tests.env.kube import KubeApi
from tests.env.waiting import eventually

pytestmark = pytest.mark.e2e

VALUE = "Leak-canary-value-Quokka-5150"
# A leading '..' makes it no valid Secret key, even once conversionStrategy Default has made
# its space a '_'.
SECRET_NAME = "..sk_live Canary-property-name-8842"


def assert_never_shown(text: str, where: str, *secrets: str) -> None:
    for secret in secrets:
        if secret in text:  # not `assert secret not in text`: pytest would print it
            pytest.fail(f"{secret[:6]}... reached the operator's {where}")


def assert_nothing_leaked(admin: KubeApi, vs: Vaultsync, logs: str, names: list[str], *secrets: str) -> None:
    statuses = json.dumps([vs.get_external_secret(n).get("status") for n in names])
    events = json.dumps([(e.reason, e.message) for e in admin.core.list_namespaced_event(vs.namespace).items])
    for where, text in (("log", logs), ("status", statuses), ("events", events)):
        assert_never_shown(text, where, *secrets)


def audit(logs: str, who: str) -> list[dict[str, Any]]:
    """The audit lines (provider and cache reads) naming `who` among the readers."""
    found = []
    for line in logs.splitlines():
        if '"audit"' in line:
            entry = json.loads(line)
            if who in entry["audit"]["requestedBy"]:
                found.append({"message": entry["message"], **entry["audit"]})
    return found


def spec(
    interval: str = "1h", key: str = "db", store: str = "fake", kind: str = "SecretStore"
) -> dict[str, Any]:
    return {
        "storeRef": {"name": store, "kind": kind},
        "refreshInterval": interval,
        "data": [{"secretKey": "password", "remoteRef": {"key": key}}],
    }


def refused(vs: Vaultsync, name: str, body: dict[str, Any]) -> str:
    """The API server's answer to the tenant creating an ExternalSecret it must refuse."""
    with pytest.raises(ApiException) as caught:
        vs.external_secret(name, body)
    assert caught.value.status == 422, caught.value.body
    return str(caught.value.body)


def some(found: list[Any]) -> list[Any]:
    assert found, "nothing yet"
    return found


def planned(vs: Vaultsync, name: str) -> dict[str, Any]:
    status: dict[str, Any] = vs.get_external_secret(name).get("status") or {}
    assert status.get("nextRefreshAt") and status.get("syncedAt"), status
    return status


def seconds(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def test_a_5ms_refresh_interval_is_raised_to_the_floor(
    tenant: Tenant, bystander: Bystander, tenancy_operator: TenancyOperators, kube_api: KubeApi
) -> None:
    vs = tenant.vs
    vs.fake_store("fake", [fake_entry("db", VALUE)])
    who = f"{tenant.namespace}/hammer"
    with tenancy_operator() as operator:
        vs.external_secret("hammer", spec("5ms"))
        vs.wait_data("hammer", {"password": VALUE})
        status = eventually(lambda: planned(vs, "hammer"), what="the first sync's status")
        first = len(audit(operator.logs(), who))
        time.sleep(6)  # 1,200 refreshes at 5 ms; none under the 10 s floor
        logs = operator.logs()
        bystander.assert_still_syncing()
    reads = len(audit(logs, who))
    assert first >= 1
    assert reads == first, f"{reads - first} reads in 6 s: the interval was not raised to the floor"
    assert seconds(status["nextRefreshAt"]) - seconds(status["syncedAt"]) >= 10
    assert_nothing_leaked(kube_api, vs, logs, ["hammer"], VALUE)


@pytest.mark.parametrize("interval", ["99999999999h", "8785h", "9" * 60 + "h"])
def test_an_absurd_refresh_interval_is_refused_naming_the_field(tenant: Tenant, interval: str) -> None:
    answer = refused(tenant.vs, "forever", spec(interval))
    assert "spec.refreshInterval" in answer
    assert "must be at most 8784h" in answer


def test_the_longest_refresh_interval_syncs_and_plans_a_year_ahead(
    tenant: Tenant, tenancy_operator: TenancyOperators, kube_api: KubeApi
) -> None:
    vs = tenant.vs
    vs.fake_store("fake", [fake_entry("db", VALUE)])
    with tenancy_operator() as operator:
        vs.external_secret("yearly", spec("8784h"))
        vs.wait_data("yearly", {"password": VALUE})
        status = eventually(lambda: planned(vs, "yearly"), what="the first sync's status")
        logs = operator.logs()
    assert seconds(status["nextRefreshAt"]) - seconds(status["syncedAt"]) >= 8784 * 3600
    assert_nothing_leaked(kube_api, vs, logs, ["yearly"], VALUE)


def test_a_thousand_data_entries_are_refused_by_the_crd(tenant: Tenant) -> None:
    entries = [{"secretKey": f"k{i}", "remoteRef": {"key": "db"}} for i in range(1000)]
    answer = refused(tenant.vs, "wide", {**spec(), "data": entries})
    assert "spec.data" in answer and "must have at most 512 items" in answer


def test_too_many_data_from_entries_are_refused_by_the_crd(tenant: Tenant) -> None:
    body = {**spec(), "dataFrom": [{"extract": {"key": f"k{i}"}} for i in range(65)]}
    answer = refused(tenant.vs, "wide", body)
    assert "spec.dataFrom" in answer and "must have at most 64 items" in answer


@pytest.mark.parametrize(
    ("target", "field"),
    [
        ({"labels": {f"l{i}": "v" for i in range(65)}}, "spec.target.labels"),
        ({"annotations": {f"a{i}": "v" for i in range(65)}}, "spec.target.annotations"),
        ({"annotations": {"a": "v" * 4097}}, "spec.target.annotations.a"),
        ({"labels": {"l": "v" * 64}}, "spec.target.labels.l"),
    ],
    ids=["labels", "annotations", "annotation-value", "label-value"],
)
def test_oversized_target_metadata_is_refused_by_the_crd(
    tenant: Tenant, target: dict[str, Any], field: str
) -> None:
    answer = refused(tenant.vs, "labelled", {**spec(), "target": target})
    assert field in answer


def test_a_property_name_that_is_a_secret_is_never_shown_in_full(
    tenant: Tenant, tenancy_operator: TenancyOperators, kube_api: KubeApi
) -> None:
    vs = tenant.vs
    vs.fake_store("fake", [fake_entry("app", {"user": "app", SECRET_NAME: VALUE})])
    with tenancy_operator("--verbose") as operator:
        vs.external_secret(
            "fishing", {"storeRef": {"name": "fake"}, "dataFrom": [{"extract": {"key": "app"}}]}
        )
        condition = vs.wait_reason("fishing", "InvalidSpec")
        eventually(
            lambda: some(Vaultsync(kube_api, vs.namespace).events("fishing")), what="the Warning Event"
        )
        logs = operator.logs()
    assert condition["message"].startswith("spec.dataFrom[0].extract: property sha256:")
    assert f"({len(SECRET_NAME)} characters)" in condition["message"]
    assert not vs.secret_exists("fishing")
    secrets = (SECRET_NAME, SECRET_NAME[:8], SECRET_NAME[-8:], VALUE)
    assert_nothing_leaked(kube_api, vs, logs, ["fishing"], *secrets)


@pytest.fixture
def shared_store(kube_api: KubeApi, tenant: Tenant, bystander: Bystander) -> Iterator[str]:
    """A ClusterSecretStore the platform shares with the tenant and the bystander."""
    name = f"{tenant.namespace}-shared"
    admin = Vaultsync(kube_api, bystander.namespace)
    admin.fake_store(
        name,
        [fake_entry("shared-db", VALUE)],
        cluster=True,
        conditions=[{"namespaces": [tenant.namespace, bystander.namespace]}],
    )
    yield name
    kube_api.custom.delete_cluster_custom_object("vaultsync.io", "v1alpha1", "clustersecretstores", name)


def test_a_value_served_from_the_shared_cache_is_audited_for_the_tenant(
    tenant: Tenant,
    bystander: Bystander,
    tenancy_operator: TenancyOperators,
    shared_store: str,
    kube_api: KubeApi,
) -> None:
    platform = Vaultsync(kube_api, bystander.namespace)
    shared = spec(key="shared-db", store=shared_store, kind="ClusterSecretStore")
    with tenancy_operator() as operator:
        platform.external_secret("platform-app", shared)
        platform.wait_data("platform-app", {"password": VALUE})
        # The tenant reads the same key after the platform did: a first sync accepts a value
        # up to 30 s old, so this read is served from the shared cache, not the provider.
        tenant.vs.external_secret("tenant-app", shared)
        tenant.vs.wait_data("tenant-app", {"password": VALUE})
        who = f"{tenant.namespace}/tenant-app"
        lines = eventually(lambda: some(audit(operator.logs(), who)), what="the tenant's audit line")
        logs = operator.logs()
    assert lines == [
        {
            "message": "cache read",
            "store": f"ClusterSecretStore {shared_store}",
            "provider": "fake",
            "keys": ["shared-db"],
            "requestedBy": [who],
            "source": "hit",
        }
    ]
    assert_nothing_leaked(kube_api, tenant.vs, logs, ["tenant-app"], VALUE)
    assert_nothing_leaked(kube_api, platform, logs, ["platform-app"], VALUE)
