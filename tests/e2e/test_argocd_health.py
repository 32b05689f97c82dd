"""Argo CD's health check for vaultsync's kinds (docs/argocd/health.lua), on the statuses the
operator really writes: Healthy when Ready, Degraded when failing, Progressing while pending.

The operator runs against the local cluster; each object's status is read back from the API
server and the Lua script evaluated in a real Lua 5.1 (lupa, from PyPI), as Argo CD's
gopher-lua would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import GROUP, VERSION, Vaultsync, fake_entry
from tests.env.lua import run_health_check
from tests.env.waiting import eventually

pytestmark = pytest.mark.e2e

SCRIPT = (Path(__file__).resolve().parents[2] / "docs" / "argocd" / "health.lua").read_text()


def health(body: dict[str, Any]) -> tuple[str, str]:
    return run_health_check(SCRIPT, body)


def store(vs: Vaultsync, name: str, cluster: bool = False) -> dict[str, Any]:
    if cluster:
        found: dict[str, Any] = vs.api.custom.get_cluster_custom_object(
            GROUP, VERSION, "clustersecretstores", name
        )
    else:
        found = vs.api.custom.get_namespaced_custom_object(GROUP, VERSION, vs.namespace, "secretstores", name)
    return found


def test_health_follows_the_status_the_operator_writes(
    vs: Vaultsync, run_operator: Any, namespace: str
) -> None:
    vs.fake_store("good", [fake_entry("db", {"password": "x"})])
    broken_vault = {
        "server": "http://127.0.0.1:9",
        "auth": {"token": {"secretRef": {"name": "no-such-secret", "key": "token"}}},
    }
    vs.apply_store("broken", {"provider": {"vault": broken_vault}})
    vs.external_secret(
        "ready", {"storeRef": {"name": "good"}, "data": [{"secretKey": "p", "remoteRef": {"key": "db"}}]}
    )
    vs.external_secret(
        "missing", {"storeRef": {"name": "good"}, "data": [{"secretKey": "p", "remoteRef": {"key": "nope"}}]}
    )
    vs.external_secret(
        "no-store", {"storeRef": {"name": "absent"}, "data": [{"secretKey": "p", "remoteRef": {"key": "db"}}]}
    )

    with run_operator(namespace, "--namespace", namespace) as operator:
        vs.wait_store_ready("good")
        vs.wait_store_ready("broken", status="False")
        vs.wait_reason("ready", "Synced")
        vs.wait_reason("missing", "KeyNotFound")
        vs.wait_reason("no-store", "StoreNotFound")
        assert health(store(vs, "good"))[0] == "Healthy"
        assert health(vs.get_external_secret("ready")) == (
            "Healthy",
            "Synced: " + vs.ready("ready").get("message", ""),
        )
        status, message = health(store(vs, "broken"))
        assert status == "Degraded"
        assert "no-such-secret" in message
        assert health(vs.get_external_secret("missing"))[0] == "Degraded"
        assert health(vs.get_external_secret("missing"))[1].startswith("KeyNotFound: spec.data[0]")
        assert health(vs.get_external_secret("no-store"))[0] == "Degraded"
        operator.stop()

    # Pending: created while no operator runs (no status), or changed since the operator acted.
    vs.external_secret(
        "pending", {"storeRef": {"name": "good"}, "data": [{"secretKey": "p", "remoteRef": {"key": "db"}}]}
    )
    vs.patch_external_secret("ready", {"spec": {"refreshInterval": "2h"}})
    assert health(vs.get_external_secret("pending")) == (
        "Progressing",
        "Waiting for vaultsync to act on this object",
    )
    changed = vs.get_external_secret("ready")
    assert changed["status"]["conditions"][0]["status"] == "True"
    assert health(changed) == ("Progressing", "Waiting for vaultsync to act on generation 2")

    with run_operator(namespace, "--namespace", namespace):
        eventually(
            lambda: _assert_healthy(vs, "pending"), what="the pending ExternalSecret to become Healthy"
        )
        eventually(
            lambda: _assert_healthy(vs, "ready"), what="the changed ExternalSecret to become Healthy again"
        )


def _assert_healthy(vs: Vaultsync, name: str) -> None:
    assert health(vs.get_external_secret(name))[0] == "Healthy"


def test_a_cluster_store_has_the_same_health(vs: Vaultsync, run_operator: Any, namespace: str) -> None:
    name = f"{namespace}-argocd"
    vs.fake_store(name, [fake_entry("db", "x")], cluster=True)
    try:
        assert health(store(vs, name, cluster=True))[0] == "Progressing"
        with run_operator(namespace, "--namespace", namespace):
            vs.wait_store_ready(name, cluster=True)
            assert health(store(vs, name, cluster=True))[0] == "Healthy"
    finally:
        vs.api.custom.delete_cluster_custom_object(GROUP, VERSION, "clustersecretstores", name)
