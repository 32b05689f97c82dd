"""`vaultsync status` against the real cluster: what is not Ready and why, as the admin and
as an app team whose RBAC hides every other namespace (the answer then says it is partial)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.cli_helpers import app_team, output_json, token_kubeconfig, vaultsync_cli
from tests.e2e.conftest import GROUP, VERSION, Vaultsync, fake_entry
from tests.e2e.tenancy.actors import Tenant
from tests.env import paths
from tests.env.kube import Cluster, KubeApi

pytestmark = pytest.mark.e2e


@pytest.fixture
def team(cluster: Cluster, kube_api: KubeApi, install_crds: list[str]) -> Iterator[Tenant]:
    with app_team(kube_api, cluster.kubeconfig) as found:
        yield found


def _failing(vs: Vaultsync, name: str) -> None:
    vs.external_secret(
        name,
        {
            "storeRef": {"name": "no-such-store"},
            "data": [{"secretKey": "password", "remoteRef": {"key": "db"}}],
        },
    )


def _items(document: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(i["kind"], i["namespace"], i["name"]) for i in document["items"]}


def test_status_lists_what_is_not_ready_with_reason_field_and_retry(
    vs: Vaultsync,
    other_namespace: str,
    team: Tenant,
    kube_api: KubeApi,
    cluster: Cluster,
    run_operator: Callable[..., Any],
    tmp_path: Path,
) -> None:
    other = Vaultsync(kube_api, other_namespace)
    watched = [vs.namespace, other_namespace, team.namespace]
    with run_operator(vs.namespace, *[a for ns in watched for a in ("--namespace", ns)]):
        vs.fake_store("vault", [fake_entry("db", {"password": "p"})])
        vs.external_secret(
            "good",
            {
                "storeRef": {"name": "vault"},
                "data": [{"secretKey": "password", "remoteRef": {"key": "db", "property": "password"}}],
            },
        )
        _failing(vs, "broken")
        missing = {"name": "no-such-secret", "key": "id"}
        auth = {"secretRef": {"accessKeyId": missing, "secretAccessKey": missing}}
        vs.apply_store("misconfigured", {"provider": {"aws": {"region": "eu-west-1", "auth": auth}}})
        elsewhere = {**missing, "namespace": vs.namespace}
        cluster_auth = {"secretRef": {"accessKeyId": elsewhere, "secretAccessKey": elsewhere}}
        cluster_store = f"cli-status-{vs.namespace}"
        vs.apply_store(
            cluster_store, {"provider": {"aws": {"region": "eu-west-1", "auth": cluster_auth}}}, cluster=True
        )
        _failing(other, "elsewhere")
        _failing(team.vs, "team-broken")
        vs.wait_reason("good", "Synced")
        vs.wait_reason("broken", "StoreNotFound")
        vs.wait_store_ready("misconfigured", status="False")
        vs.wait_store_ready(cluster_store, status="False", cluster=True)
        other.wait_reason("elsewhere", "StoreNotFound")
        team.vs.wait_reason("team-broken", "StoreNotFound")

    try:
        _check_status(vs, other_namespace, team, cluster, cluster_store, tmp_path)
    finally:
        kube_api.custom.delete_cluster_custom_object(GROUP, VERSION, "clustersecretstores", cluster_store)


def _check_status(
    vs: Vaultsync, other_namespace: str, team: Tenant, cluster: Cluster, cluster_store: str, tmp_path: Path
) -> None:
    admin = cluster.kubeconfig
    table = vaultsync_cli("status", "-n", vs.namespace, kubeconfig=admin)
    assert table.returncode == 0, table.stderr
    header, *lines = table.stdout.splitlines()
    assert header.split()[:5] == ["KIND", "NAMESPACE", "NAME", "READY", "REASON"]
    assert any(
        line.split()[:5] == ["ExternalSecret", vs.namespace, "broken", "False", "StoreNotFound"]
        for line in lines
    )
    assert not any(" good " in f" {line} " for line in lines), (
        "a Ready ExternalSecret is listed without --all"
    )
    assert "partial" not in table.stderr

    document = output_json(vaultsync_cli("status", "-n", vs.namespace, "-o", "json", kubeconfig=admin))
    rows = {(i["kind"], i["name"]): i for i in document["items"]}
    broken = rows[("ExternalSecret", "broken")]
    assert broken["field"] == "spec.storeRef.name", broken
    assert broken["nextRetry"].startswith("within"), broken
    assert broken["age"] != "-"
    store = rows[("SecretStore", "misconfigured")]
    assert store["ready"] == "False" and store["field"].startswith("spec.provider.aws"), store
    assert document["partial"] is False

    everything = output_json(vaultsync_cli("status", "-A", "--all", "-o", "json", kubeconfig=admin))
    assert {
        ("ExternalSecret", vs.namespace, "good"),
        ("ExternalSecret", vs.namespace, "broken"),
        ("ExternalSecret", other_namespace, "elsewhere"),
        ("ExternalSecret", team.namespace, "team-broken"),
        ("ClusterSecretStore", "", cluster_store),
    } <= _items(everything)
    (row,) = [i for i in everything["items"] if i["name"] == cluster_store]
    assert row["ready"] == "False" and row["nextRetry"] == "within 1m", row

    # The app team sees its own namespace only, and is told the answer is partial.
    team_config = token_kubeconfig(admin, team.token, team.namespace, tmp_path / "team-kubeconfig")
    seen = vaultsync_cli("status", "-A", "-o", "json", kubeconfig=team_config)
    assert seen.returncode == 0, seen.stderr
    found = output_json(seen)
    assert _items(found) == {("ExternalSecret", team.namespace, "team-broken")}
    assert found["partial"] is True and found["namespacesUnlisted"] is True
    assert "partial answer: you may not list ClusterSecretStores" in found["notes"]
    assert "partial answer" in seen.stderr and team.namespace in seen.stderr
    plain = vaultsync_cli("status", "-A", kubeconfig=team_config)
    assert plain.returncode == 0 and "team-broken" in plain.stdout
    assert other_namespace not in plain.stdout and vs.namespace not in plain.stdout
    assert "partial answer" in plain.stderr


def test_kubectl_runs_it_as_the_vaultsync_plugin(cluster: Cluster, tmp_path: Path) -> None:
    """The `kubectl-vaultsync` entry point pyproject.toml declares, put on the PATH as pip puts
    console scripts there, is `kubectl vaultsync`. (The shared test venv's own copy of the script
    depends on which clone installed it last, so the test writes it as pip would.)"""
    scripts = tomllib.loads((paths.REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, function = scripts["kubectl-vaultsync"].split(":")
    plugin = tmp_path / "kubectl-vaultsync"
    plugin.write_text(
        f"#!{sys.executable}\nimport sys\nfrom {module} import {function}\nsys.exit({function}())\n"
    )
    plugin.chmod(0o755)
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(tmp_path), os.environ.get("PATH", "")]),
        "PYTHONPATH": str(paths.REPO / "operator"),
    }
    result = subprocess.run(
        [str(cluster.kubectl), "vaultsync", "status", "-A", "--kubeconfig", str(cluster.kubeconfig)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_context_picks_the_kubeconfig_context(cluster: Cluster, tmp_path: Path) -> None:
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    good = next(c for c in config["contexts"] if c["name"] == config["current-context"])
    config["clusters"].append({"name": "nowhere", "cluster": {"server": "https://127.0.0.1:1"}})
    config["contexts"].append({"name": "nowhere", "context": {**good["context"], "cluster": "nowhere"}})
    config["current-context"] = "nowhere"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))

    assert vaultsync_cli("status", "-A", "--context", good["name"], kubeconfig=kubeconfig).returncode == 0
    unreachable = vaultsync_cli("status", "-A", kubeconfig=kubeconfig, timeout=120)
    assert unreachable.returncode == 1 and "unreachable" in unreachable.stderr
    unknown = vaultsync_cli("status", "--context", "no-such-context", kubeconfig=kubeconfig)
    assert unknown.returncode == 1 and "--context: no context 'no-such-context'" in unknown.stderr


def test_status_follows_kubectl_conventions_for_usage_errors_and_help(cluster: Cluster) -> None:
    bad = vaultsync_cli("status", "-o", "xml", kubeconfig=cluster.kubeconfig)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    helped = vaultsync_cli("status", "--help", kubeconfig=cluster.kubeconfig)
    assert helped.returncode == 0 and "--all-namespaces" in helped.stdout
    missing = vaultsync_cli("status", kubeconfig=Path("/nonexistent/kubeconfig"))
    assert missing.returncode == 1 and missing.stderr.startswith("error: kubeconfig:")
