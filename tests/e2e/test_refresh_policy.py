"""refreshPolicy and target.immutable as External Secrets Operator defines them, on a real cluster.

Each test changes the value in the store and then waits longer than several refresh
intervals (1 s), so "not refreshed" is a fact, not a race; the store's observedGeneration
tells when the operator has seen the new value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import GROUP, VERSION, Vaultsync, fake_entry
from tests.e2e.workloads import stays
from tests.env.kube import Cluster
from tests.env.operator import OperatorProcess
from tests.env.waiting import eventually

pytestmark = pytest.mark.e2e

HOLD = 6.0  # seconds: six refresh intervals


def _store(vs: Vaultsync, value: str, *, first: bool = False) -> None:
    entries = [fake_entry("db", {"password": value})]
    if first:
        vs.fake_store("fake", entries)
        return
    vs.patch_store("fake", {"spec": {"provider": {"fake": {"data": entries}}}})

    def observed() -> None:
        store = vs.api.custom.get_namespaced_custom_object(
            GROUP, VERSION, vs.namespace, "secretstores", "fake"
        )
        assert (store.get("status") or {}).get("observedGeneration") == store["metadata"]["generation"]

    eventually(observed, what="the operator to see the store's new value")


def _spec(policy: str, **target: Any) -> dict[str, Any]:
    return {
        "storeRef": {"name": "fake"},
        "refreshInterval": "1s",
        "refreshPolicy": policy,
        "target": dict(target),
        "data": [{"secretKey": "password", "remoteRef": {"key": "db", "property": "password"}}],
    }


def _holds(vs: Vaultsync, name: str, value: str) -> None:
    stays(lambda: _equal(vs.secret_data(name), {"password": value}), seconds=HOLD)


def _equal(found: object, expected: object) -> None:
    assert found == expected, found


def test_periodic_refreshes_on_its_interval(vs: Vaultsync, operator: OperatorProcess) -> None:
    _store(vs, "v1", first=True)
    vs.external_secret("periodic", _spec("Periodic"))
    vs.wait_data("periodic", {"password": "v1"})
    _store(vs, "v2")
    vs.wait_data("periodic", {"password": "v2"})


def test_on_change_syncs_only_when_the_spec_changes(vs: Vaultsync, operator: OperatorProcess) -> None:
    _store(vs, "v1", first=True)
    vs.external_secret("on-change", _spec("OnChange"))
    vs.wait_data("on-change", {"password": "v1"})
    _store(vs, "v2")
    _holds(vs, "on-change", "v1")

    vs.patch_external_secret("on-change", {"spec": {"target": {"labels": {"team": "a"}}}})
    vs.wait_data("on-change", {"password": "v2"})
    assert vs.secret("on-change").metadata.labels["team"] == "a"

    operator.restart()  # in sync: a restart reads nothing and writes nothing
    before = vs.secret("on-change").metadata.resource_version
    _store(vs, "v3")
    stays(lambda: _equal(vs.secret("on-change").metadata.resource_version, before), seconds=HOLD)


def test_created_once_syncs_once_and_again_only_for_a_deleted_or_edited_secret(
    vs: Vaultsync, operator: OperatorProcess
) -> None:
    _store(vs, "v1", first=True)
    vs.external_secret("once", _spec("CreatedOnce"))
    vs.wait_data("once", {"password": "v1"})
    before = vs.secret("once").metadata.resource_version
    _store(vs, "v2")
    vs.patch_external_secret("once", {"spec": {"target": {"labels": {"team": "a"}}}})  # not a reason
    stays(lambda: _equal(vs.secret("once").metadata.resource_version, before), seconds=HOLD)
    assert vs.secret_data("once") == {"password": "v1"}

    operator.restart()
    stays(lambda: _equal(vs.secret("once").metadata.resource_version, before), seconds=HOLD)

    vs.api.core.delete_namespaced_secret("once", vs.namespace)
    vs.wait_data("once", {"password": "v2"})  # recreated, with what the store holds now
    assert vs.secret("once").metadata.labels["team"] == "a"

    _store(vs, "v3")
    vs.api.core.patch_namespaced_secret("once", vs.namespace, {"data": {"password": "aGFuZC1lZGl0"}})
    vs.wait_data("once", {"password": "v3"})  # an edit by someone else is undone, from the store
    _holds(vs, "once", "v3")


def test_an_immutable_target_keeps_its_data_and_says_so_when_the_remote_changes(
    vs: Vaultsync, operator: OperatorProcess
) -> None:
    _store(vs, "v1", first=True)
    vs.external_secret("frozen", _spec("Periodic", immutable=True))
    vs.external_secret("bystander", _spec("Periodic"))
    vs.wait_data("frozen", {"password": "v1"})
    assert vs.secret("frozen").immutable is True
    assert not vs.secret("bystander").immutable

    _store(vs, "v2")
    condition = vs.wait_reason("frozen", "SecretImmutable")
    assert condition["status"] == "False"
    assert condition["message"].startswith("spec.target.immutable: "), condition["message"]
    assert "v1" not in condition["message"] and "v2" not in condition["message"]
    assert vs.secret_data("frozen") == {"password": "v1"}
    vs.wait_data("bystander", {"password": "v2"})  # nothing else is affected

    vs.api.core.delete_namespaced_secret("frozen", vs.namespace)
    vs.wait_data("frozen", {"password": "v2"})  # written anew, immutable again
    assert vs.secret("frozen").immutable is True
    eventually(lambda: _equal(vs.ready("frozen")["reason"], "Synced"), what="frozen to be Synced again")


def test_a_bad_policy_or_an_immutable_merge_is_refused_with_its_field(
    cluster: Cluster, vs: Vaultsync, operator: OperatorProcess, tmp_path: Path
) -> None:
    _store(vs, "v1", first=True)
    path = tmp_path / "bad.yaml"
    path.write_text(
        f"apiVersion: {GROUP}/{VERSION}\nkind: ExternalSecret\nmetadata:\n  name: bad\n"
        f"  namespace: {vs.namespace}\nspec:\n  storeRef: {{name: fake}}\n  refreshPolicy: Sometimes\n"
    )
    with pytest.raises(RuntimeError) as refused:
        cluster.run_kubectl("apply", "-f", str(path))
    assert 'spec.refreshPolicy: Unsupported value: "Sometimes"' in str(refused.value)

    vs.external_secret("merge", {**_spec("Periodic", creationPolicy="Merge", immutable=True)})
    condition = vs.wait_reason("merge", "InvalidSpec")
    assert condition["message"].startswith("spec.target: "), condition["message"]
    assert "immutable" in condition["message"]
    assert not vs.secret_exists("merge")
