"""`vaultsync impact STORE KEY` against the real cluster: every ExternalSecret, Secret and
opted-in workload depending on a remote key, across namespaces; an app team whose RBAC hides
the other namespaces sees only its own, and is told which namespaces refused it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cli_helpers import app_team, output_json, token_kubeconfig, vaultsync_cli
from tests.e2e.conftest import Vaultsync
from tests.e2e.tenancy.actors import Tenant
from tests.e2e.workloads import (
    AUTO_RELOAD,
    RELOAD,
    Workloads,
    container,
    deployment,
    env_from_key,
    pod_spec,
    stateful_set,
)
from tests.env.kube import Cluster, KubeApi

pytestmark = pytest.mark.e2e

KEY = "prod/db"


@pytest.fixture
def team(cluster: Cluster, kube_api: KubeApi, install_crds: list[str]) -> Iterator[Tenant]:
    with app_team(kube_api, cluster.kubeconfig, may_list_namespaces=True) as found:
        yield found


def _reads(
    key: str, store: str = "vault", extract: bool = False, kind: str = "SecretStore"
) -> dict[str, Any]:
    ref = {"name": store, "kind": kind}
    if extract:
        return {"storeRef": ref, "dataFrom": [{"extract": {"key": key}}]}
    return {
        "storeRef": ref,
        "data": [{"secretKey": "password", "remoteRef": {"key": key, "property": "password"}}],
    }


def _items(document: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(i["kind"], i["namespace"], i["name"]) for i in document["items"]}


def test_impact_finds_every_dependant_the_user_may_read(
    vs: Vaultsync, other_namespace: str, team: Tenant, kube_api: KubeApi, cluster: Cluster, tmp_path: Path
) -> None:
    here, there = vs.namespace, other_namespace
    other = Vaultsync(kube_api, there)
    vs.external_secret("db", _reads(KEY))
    vs.external_secret("unrelated", _reads("prod/other"))
    vs.external_secret("via-legacy", _reads(KEY, store="legacy"))
    other.external_secret("bundle", _reads(KEY, extract=True))
    other.external_secret("cluster-wide", _reads(KEY, kind="ClusterSecretStore"))
    team.vs.external_secret("team-db", _reads(KEY))

    Workloads(kube_api, here).create(deployment("web", annotations={RELOAD: "db,unrelated"}))
    Workloads(kube_api, here).create(deployment("not-opted-in", annotations={}))
    Workloads(kube_api, there).create(
        stateful_set(
            "cache",
            annotations={AUTO_RELOAD: "true"},
            spec=pod_spec(container(**env_from_key("bundle", "password"))),
        )
    )
    Workloads(team.api, team.namespace).create(deployment("team-web", annotations={RELOAD: "team-db"}))

    admin = cluster.kubeconfig
    found = output_json(vaultsync_cli("impact", "vault", KEY, "-A", "-o", "json", kubeconfig=admin))
    mine = {item for item in _items(found) if item[1] in (here, there, team.namespace)}
    assert mine == {
        ("ExternalSecret", here, "db"),
        ("ExternalSecret", there, "bundle"),
        ("ExternalSecret", there, "cluster-wide"),
        ("ExternalSecret", team.namespace, "team-db"),
        ("Secret", here, "db"),
        ("Secret", there, "bundle"),
        ("Secret", there, "cluster-wide"),
        ("Secret", team.namespace, "team-db"),
        ("Deployment", here, "web"),
        ("StatefulSet", there, "cache"),
        ("Deployment", team.namespace, "team-web"),
    }
    assert found["partial"] is False

    # The kind narrows the store; -n narrows the namespaces.
    namespaced = output_json(
        vaultsync_cli("impact", "SecretStore/vault", KEY, "-n", there, "-o", "json", kubeconfig=admin)
    )
    assert _items(namespaced) == {
        ("ExternalSecret", there, "bundle"),
        ("Secret", there, "bundle"),
        ("StatefulSet", there, "cache"),
    }
    table = vaultsync_cli("impact", "ClusterSecretStore/vault", KEY, "-n", there, kubeconfig=admin)
    assert table.returncode == 0 and "cluster-wide" in table.stdout and "bundle" not in table.stdout

    # The app team: only its namespace, and the answer says the others refused it.
    team_config = token_kubeconfig(admin, team.token, team.namespace, tmp_path / "team-kubeconfig")
    seen = vaultsync_cli("impact", "vault", KEY, "-A", "-o", "json", kubeconfig=team_config)
    assert seen.returncode == 0, seen.stderr
    answer = output_json(seen)
    assert _items(answer) == {
        ("ExternalSecret", team.namespace, "team-db"),
        ("Secret", team.namespace, "team-db"),
        ("Deployment", team.namespace, "team-web"),
    }
    assert answer["partial"] is True
    assert {here, there} <= set(answer["forbiddenNamespaces"])
    assert team.namespace not in answer["forbiddenNamespaces"]
    assert "namespace(s) refused you" in seen.stderr
    plain = vaultsync_cli("impact", "vault", KEY, "-A", kubeconfig=team_config)
    assert plain.returncode == 0 and "team-web" in plain.stdout and here not in plain.stdout
    assert "partial answer" in plain.stderr
