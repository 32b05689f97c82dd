"""`vaultsync sync` against the real cluster and operator: one, a selector, all; it waits for
the operator's answer to this very request and exits 1 when any failed or none came."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.cli_helpers import output_json, vaultsync_cli
from tests.e2e.conftest import Vaultsync, fake_entry
from tests.env.kube import Cluster

pytestmark = pytest.mark.e2e


def _spec(key: str) -> dict[str, Any]:
    return {
        "storeRef": {"name": "vault"},
        "refreshInterval": "1h",
        "data": [{"secretKey": "password", "remoteRef": {"key": key, "property": "password"}}],
    }


def _store_data(vs: Vaultsync, password: str) -> None:
    entries = [fake_entry("db", {"password": password}), fake_entry("api", {"password": f"api-{password}"})]
    vs.patch_store("vault", {"spec": {"provider": {"fake": {"data": entries}}}})


def test_sync_forces_a_reread_of_one_a_selector_or_all_and_reports_failures(
    vs: Vaultsync, cluster: Cluster, run_operator: Callable[..., Any]
) -> None:
    kubeconfig = cluster.kubeconfig
    ns = ("-n", vs.namespace)
    with run_operator(vs.namespace, "--namespace", vs.namespace):
        vs.fake_store(
            "vault", [fake_entry("db", {"password": "one"}), fake_entry("api", {"password": "api-one"})]
        )
        vs.external_secret("db", _spec("db"), labels={"team": "payments"})
        vs.external_secret("api", _spec("api"), labels={"team": "payments"})
        vs.external_secret("lost", _spec("no-such-key"))
        vs.wait_data("db", {"password": "one"})
        vs.wait_data("api", {"password": "api-one"})
        vs.wait_reason("lost", "KeyNotFound")

        # A refresh interval of an hour would not see the new values; `sync` does, for the one named.
        _store_data(vs, "two")
        one = vaultsync_cli("sync", "db", *ns, kubeconfig=kubeconfig)
        assert one.returncode == 0, one.stdout + one.stderr
        assert "Synced" in one.stdout
        assert vs.secret_data("db") == {"password": "two"}
        assert vs.secret_data("api") == {"password": "api-one"}, "an ExternalSecret not named was synced"

        selected = vaultsync_cli("sync", "-l", "team=payments", *ns, "-o", "json", kubeconfig=kubeconfig)
        assert selected.returncode == 0, selected.stderr
        assert {(i["name"], i["result"]) for i in output_json(selected)["items"]} == {
            ("db", "Synced"),
            ("api", "Synced"),
        }
        assert vs.secret_data("api") == {"password": "api-two"}

        everything = vaultsync_cli("sync", "--all", *ns, "-o", "json", kubeconfig=kubeconfig)
        assert everything.returncode == 1, "a failed sync must make the exit code 1"
        results = {i["name"]: i for i in output_json(everything)["items"]}
        assert set(results) == {"db", "api", "lost"}
        assert results["lost"]["result"] == "KeyNotFound"
        assert "no-such-key" in results["lost"]["message"]

    # No operator to answer: the wait ends at --timeout, and that is a failure.
    unanswered = vaultsync_cli("sync", "db", *ns, "--timeout", "3", kubeconfig=kubeconfig)
    assert unanswered.returncode == 1
    assert "Timeout" in unanswered.stdout

    missing = vaultsync_cli("sync", "no-such-externalsecret", *ns, kubeconfig=kubeconfig)
    assert missing.returncode == 1 and "NotFound" in missing.stdout
    usage = vaultsync_cli("sync", "db", "--all", *ns, kubeconfig=kubeconfig)
    assert usage.returncode == 2
