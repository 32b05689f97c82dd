"""An ExternalSecret becomes a Secret with the right data, type, labels and owner, and stays in sync."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Vaultsync, fake_entry
from tests.env.waiting import eventually

pytestmark = pytest.mark.e2e

DB = {"username": "shop", "password": "pw-one", "nested": {"host": "db.internal", "port": 5432}}


def spec(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "storeRef": {"name": "fake"},
        "refreshInterval": "1h",
        "data": [{"secretKey": "password", "remoteRef": {"key": "db", "property": "password"}}],
    }
    base.update(overrides)
    return base


def test_property_nested_path_version_and_extract_land_in_the_secret(vs: Vaultsync, operator: Any) -> None:
    vs.fake_store(
        "fake",
        [
            fake_entry("db", DB, "1"),
            fake_entry("db", {**DB, "password": "pw-two"}, "2"),
            fake_entry("api", {"STRIPE": "sk_1", "SENDGRID": "sg_1"}, "7"),
        ],
    )
    vs.external_secret(
        "app",
        spec(
            data=[
                {"secretKey": "password", "remoteRef": {"key": "db", "property": "password"}},
                {
                    "secretKey": "old-password",
                    "remoteRef": {"key": "db", "property": "password", "version": "1"},
                },
                {"secretKey": "host", "remoteRef": {"key": "db", "property": "nested.host"}},
                {"secretKey": "port", "remoteRef": {"key": "db", "property": "nested.port"}},
            ],
            dataFrom=[{"extract": {"key": "api"}}],
        ),
    )
    vs.wait_data(
        "app",
        {
            "password": "pw-two",
            "old-password": "pw-one",
            "host": "db.internal",
            "port": "5432",
            "STRIPE": "sk_1",
            "SENDGRID": "sg_1",
        },
    )
    vs.wait_reason("app", "Synced")  # the status is written just after the Secret
    status = vs.get_external_secret("app")["status"]
    assert status["observedGeneration"] == 1
    assert status["remoteVersions"] == {"db": "2", "db@1": "1", "api": "7"}
    assert status["dataHMAC"].startswith("hmac-sha256:")
    assert status["syncedAt"] and status["nextRefreshAt"]
    ready = vs.ready("app")
    assert (ready["status"], ready["reason"]) == ("True", "Synced")


def test_target_name_type_labels_annotations_and_template(vs: Vaultsync, operator: Any) -> None:
    vs.fake_store("fake", [fake_entry("db", DB)])
    vs.external_secret(
        "app",
        spec(
            target={
                "name": "rendered",
                "type": "kubernetes.io/basic-auth",
                "labels": {"team": "shop"},
                "annotations": {"owner": "payments"},
                "template": {
                    "delimiters": ["<<", ">>"],
                    "data": {
                        "username": "<< user >>",
                        "password": "<< password >>",
                        "url": "db://<< user >>@x",
                    },
                },
            },
            data=[
                {"secretKey": "user", "remoteRef": {"key": "db", "property": "username"}},
                {"secretKey": "password", "remoteRef": {"key": "db", "property": "password"}},
            ],
        ),
    )
    vs.wait_data("rendered", {"username": "shop", "password": "pw-one", "url": "db://shop@x"})
    secret = vs.secret("rendered")
    assert secret.type == "kubernetes.io/basic-auth"
    assert secret.metadata.labels["team"] == "shop"
    assert secret.metadata.labels["app.kubernetes.io/managed-by"] == "vaultsync"
    assert secret.metadata.annotations["owner"] == "payments"
    (owner,) = secret.metadata.owner_references
    assert (owner.kind, owner.name, owner.controller) == ("ExternalSecret", "app", True)


def test_spec_change_syncs_at_once_and_force_sync_rereads(vs: Vaultsync, operator: Any) -> None:
    vs.fake_store("fake", [fake_entry("db", DB), fake_entry("other", {"password": "other-pw"})])
    vs.external_secret("app", spec())
    vs.wait_data("app", {"password": "pw-one"})
    vs.patch_external_secret(
        "app",
        {
            "spec": {
                "data": [{"secretKey": "password", "remoteRef": {"key": "other", "property": "password"}}]
            }
        },
    )
    vs.wait_data("app", {"password": "other-pw"})

    # The store's data changes; a 1h refresh would not see it, a force-sync does.
    vs.patch_store(
        "fake", {"spec": {"provider": {"fake": {"data": [fake_entry("other", {"password": "forced"})]}}}}
    )
    vs.patch_external_secret("app", {"metadata": {"annotations": {"vaultsync.io/force-sync": "1"}}})
    vs.wait_data("app", {"password": "forced"})
    eventually(lambda: _handled(vs, "1"), what="the force-sync to be recorded")


def test_refresh_interval_picks_up_a_new_remote_version(vs: Vaultsync, operator: Any) -> None:
    vs.fake_store("fake", [fake_entry("db", DB, "1")])
    vs.external_secret("app", spec(refreshInterval="2s"))
    vs.wait_data("app", {"password": "pw-one"})
    vs.patch_store(
        "fake",
        {"spec": {"provider": {"fake": {"data": [fake_entry("db", {**DB, "password": "pw-new"}, "2")]}}}},
    )
    vs.wait_data("app", {"password": "pw-new"}, timeout=30)

    def status_names_the_new_version() -> None:  # the status is written just after the Secret
        assert vs.get_external_secret("app")["status"]["remoteVersions"] == {"db": "2"}

    eventually(status_names_the_new_version, what="remoteVersions to name version 2")


def test_refresh_interval_zero_syncs_once(vs: Vaultsync, operator: Any) -> None:
    vs.fake_store("fake", [fake_entry("db", DB, "1")])
    vs.external_secret("app", spec(refreshInterval="0"))
    vs.wait_data("app", {"password": "pw-one"})
    vs.wait_reason("app", "Synced")
    status = vs.get_external_secret("app")["status"]
    assert status["syncedAt"] and status.get("nextRefreshAt") is None


def test_hand_edited_and_deleted_secrets_are_restored(vs: Vaultsync, operator: Any) -> None:
    vs.fake_store("fake", [fake_entry("db", DB)])
    vs.external_secret("app", spec())
    vs.wait_data("app", {"password": "pw-one"})
    vs.api.core.patch_namespaced_secret("app", vs.namespace, {"stringData": {"password": "tampered"}})
    vs.wait_data("app", {"password": "pw-one"})
    vs.api.core.delete_namespaced_secret("app", vs.namespace)
    vs.wait_data("app", {"password": "pw-one"})


def test_steady_state_writes_nothing(vs: Vaultsync, operator: Any) -> None:
    vs.fake_store("fake", [fake_entry("db", DB, "1")])
    vs.external_secret("app", spec(refreshInterval="1s"))
    vs.wait_data("app", {"password": "pw-one"})
    vs.wait_reason("app", "Synced")
    secret_version = vs.secret("app").metadata.resource_version
    es_version = vs.get_external_secret("app")["metadata"]["resourceVersion"]

    def refreshed_several_times() -> None:
        metrics = operator_metrics(operator)
        assert metrics.get('vaultsync_syncs_total{reason="Synced"}', 0) >= 4, metrics

    eventually(refreshed_several_times, what="several refreshes", timeout=30)
    assert vs.secret("app").metadata.resource_version == secret_version
    assert vs.get_external_secret("app")["metadata"]["resourceVersion"] == es_version


def test_refreshes_trust_the_secret_watch_instead_of_reading_the_secret(vs: Vaultsync, operator: Any) -> None:
    vs.fake_store("fake", [fake_entry("db", DB, "1")])
    vs.external_secret("app", spec(refreshInterval="1s"))
    vs.wait_data("app", {"password": "pw-one"})
    vs.wait_reason("app", "Synced")
    reads = 'vaultsync_kube_requests_total{resource="secrets",verb="get"}'

    def synced_count() -> float:
        return operator_metrics(operator).get('vaultsync_syncs_total{reason="Synced"}', 0)

    def refreshed(after: float) -> None:
        assert synced_count() >= after + 3, "fewer than three more refreshes"

    before_refreshes, before_reads = synced_count(), operator_metrics(operator).get(reads, 0)
    eventually(lambda: refreshed(before_refreshes), what="three more refreshes", timeout=30)
    assert operator_metrics(operator).get(reads, 0) == before_reads

    # A hand edit is reported by the watch, so the next sync reads and restores the Secret.
    vs.api.core.patch_namespaced_secret("app", vs.namespace, {"stringData": {"password": "tampered"}})
    vs.wait_data("app", {"password": "pw-one"})
    assert operator_metrics(operator).get(reads, 0) > before_reads


def operator_metrics(operator: Any) -> dict[str, float]:
    import urllib.request

    with urllib.request.urlopen(operator.metrics_url, timeout=5) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_kopf_leaves_no_annotations_or_finalizers(vs: Vaultsync, operator: Any) -> None:
    vs.fake_store("fake", [fake_entry("db", DB)])
    vs.external_secret("app", spec())
    vs.wait_data("app", {"password": "pw-one"})
    es = vs.get_external_secret("app")["metadata"]
    secret = vs.secret("app").metadata
    for meta in (es.get("annotations") or {}, secret.annotations or {}):
        assert not [k for k in meta if "kopf" in k], meta
    assert not es.get("finalizers")
    assert not secret.finalizers


def test_the_hmac_key_is_made_once_and_survives_operator_restarts(
    vs: Vaultsync, run_operator: Any, namespace: str
) -> None:
    vs.fake_store("fake", [fake_entry("db", DB, "1")])
    with run_operator(namespace, "--namespace", namespace):
        vs.external_secret("app", spec())
        vs.wait_data("app", {"password": "pw-one"})
        vs.wait_reason("app", "Synced")
        key = vs.secret("vaultsync-hmac-key")
        first_hmac = vs.get_external_secret("app")["status"]["dataHMAC"]
        assert key.metadata.labels == {"app.kubernetes.io/part-of": "vaultsync"}
        assert len(key.data["key"]) >= 44  # 32 random bytes, base64
    secret_version = vs.secret("app").metadata.resource_version
    with run_operator(namespace, "--namespace", namespace):
        vs.patch_external_secret("app", {"metadata": {"annotations": {"vaultsync.io/force-sync": "again"}}})
        eventually(lambda: _handled(vs, "again"), what="the forced sync after the restart", timeout=60)
    assert vs.secret("vaultsync-hmac-key").metadata.uid == key.metadata.uid
    assert vs.get_external_secret("app")["status"]["dataHMAC"] == first_hmac
    assert vs.secret("app").metadata.resource_version == secret_version


def _handled(vs: Vaultsync, token: str) -> None:
    status = vs.get_external_secret("app")["status"]
    assert status.get("forceSyncHandled") == token, status.get("forceSyncHandled")


def test_a_secret_deleted_while_the_operator_was_down_is_restored_after_start(
    vs: Vaultsync, run_operator: Any, namespace: str
) -> None:
    """In-sync objects resume on their refresh grid (1 h here), but one whose Secret the watch
    never reports is reconciled once the startup listings are done, well before its refresh."""
    vs.fake_store("fake", [fake_entry("db", DB, "1")])
    vs.external_secret("kept", spec())
    vs.external_secret("lost", spec())
    with run_operator(namespace, "--namespace", namespace):
        vs.wait_data("kept", {"password": "pw-one"})
        vs.wait_data("lost", {"password": "pw-one"})
        vs.wait_reason("kept", "Synced")
        vs.wait_reason("lost", "Synced")
    kept_version = vs.secret("kept").metadata.resource_version
    vs.api.core.delete_namespaced_secret("lost", vs.namespace)
    with run_operator(namespace, "--namespace", namespace) as running:
        vs.wait_data("lost", {"password": "pw-one"}, timeout=60)
        synced = operator_metrics(running).get('vaultsync_syncs_total{reason="Synced"}', 0)
    assert synced == 1  # only the lost one; the kept one waits for its refresh
    assert vs.secret("kept").metadata.resource_version == kept_version


def test_events_beyond_the_budget_are_dropped_and_counted(
    vs: Vaultsync, run_operator: Any, namespace: str
) -> None:
    """Ten thousand first syncs must not become ten thousand Events; status still says it all."""
    vs.fake_store("fake", [fake_entry("db", DB, "1")])
    names = [f"app-{i}" for i in range(6)]
    for name in names:
        vs.external_secret(name, spec())
    args = ("--namespace", namespace, "--event-burst", "3", "--events-per-second", "0.001")
    with run_operator(namespace, *args) as running:
        for name in names:
            vs.wait_reason(name, "Synced")

        def three_dropped() -> None:
            dropped = operator_metrics(running).get('vaultsync_events_dropped_total{type="Normal"}', 0)
            assert dropped == 3, dropped

        eventually(three_dropped, what="three dropped Events")
    posted = [e for name in names for e in vs.events(name) if e.reason == "Synced"]
    assert len(posted) == 3
