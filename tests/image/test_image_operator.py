"""The operator image syncs a Secret with exactly the chart's RBAC, and says so when a rule is missing.

The container runs on the host network against the test cluster, authenticated only by a
token issued for the chart's ServiceAccount, whose rights are the chart's rendered Roles
and ClusterRoles. This proves the image and the RBAC together: if the operator needed a
right the chart does not grant, the sync would fail here. Taking one rule away must turn
into a clear Ready=False condition, not a silent stall.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.helm import Manifest, render
from tests.e2e.conftest import Vaultsync, fake_entry
from tests.env import kube
from tests.env.kube import Cluster, KubeApi
from tests.env.waiting import NotYet, eventually
from tests.image.container import OperatorContainer, require_image

pytestmark = pytest.mark.e2e

RBAC_KINDS = frozenset({"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"})


@pytest.fixture
def app_namespace(kube_api: KubeApi) -> Iterator[str]:
    """The namespace the app team works in; the operator's own is `namespace`."""
    name = kube.create_namespace(kube_api, prefix="vs-test-app-")
    yield name
    kube.delete_namespace(kube_api, name)


def lease_args(rbac: list[Manifest]) -> list[str]:
    """The chart's `--leader-election-id`: the one Lease name its Role lets the operator renew."""
    role = next(m for m in rbac if m["kind"] == "Role" and m["metadata"]["name"].endswith("-leader-election"))
    names = {n for rule in role["rules"] for n in rule.get("resourceNames", [])}
    assert len(names) == 1, names
    return [f"--leader-election-id={names.pop()}"]


class ChartRbac:
    """The chart's ServiceAccount and RBAC (and whatever else a test picks), applied on
    their own, without the Deployment, and a token for that ServiceAccount."""

    def __init__(self, cluster: Cluster, tmp_path: Path) -> None:
        self._cluster = cluster
        self._tmp_path = tmp_path
        self._applied: list[Path] = []

    def apply(
        self, values: dict[str, Any], namespace: str, kinds: frozenset[str] = RBAC_KINDS
    ) -> list[Manifest]:
        """Apply the rendered objects of these kinds (CRDs first, until Established)."""
        release = namespace  # unique, and cluster-scoped names derive from it
        manifests = render(
            {**values, "installCRDs": False}, self._tmp_path, release=release, namespace=namespace
        )
        chosen = [m for m in manifests if m["kind"] in kinds]
        crds = [m for m in chosen if m["kind"] == "CustomResourceDefinition"]
        for stage, objects in (("crds", crds), ("objects", [m for m in chosen if m not in crds])):
            if not objects:
                continue
            path = self._tmp_path / f"{release}-{stage}.yaml"
            path.write_text(yaml.safe_dump_all(objects))
            self._cluster.run_kubectl("apply", "-f", str(path))
            self._applied.insert(0, path)
            if stage == "crds":
                self._cluster.run_kubectl(
                    "wait", "--for=condition=Established", "--timeout=60s", "-f", str(path)
                )
        self._wait_in_force(chosen)
        return chosen

    def _wait_in_force(self, manifests: list[Manifest]) -> None:
        """RBAC reaches the authorizer through an informer: an operator started at once may be
        refused for a moment. Wait until every rule answers yes for the ServiceAccount."""
        accounts = [m["metadata"] for m in manifests if m["kind"] == "ServiceAccount"]
        if not accounts:
            return
        user = f"system:serviceaccount:{accounts[0].get('namespace', '')}:{accounts[0]['name']}"
        # A rule for an API the cluster does not serve (Argo Rollouts without its CRD) is
        # answered "no" by `kubectl auth can-i`, however long one waits: not checked.
        served = set(self._cluster.run_kubectl("api-resources", "-o", "name").split())
        checks = []
        for role in (m for m in manifests if m["kind"] in ("Role", "ClusterRole")):
            where = ["-n", role["metadata"]["namespace"]] if role["kind"] == "Role" else ["-A"]
            for rule in role.get("rules") or []:
                group = (rule.get("apiGroups") or [""])[0]
                resource, _, subresource = rule["resources"][0].partition("/")
                resource += f".{group}" if group else ""
                if resource not in served:
                    continue
                name = (rule.get("resourceNames") or [""])[0]
                target = f"{resource}/{name}" if name else resource
                sub = [f"--subresource={subresource}"] if subresource else []
                checks.append([rule["verbs"][0], target, *sub, *where, f"--as={user}"])

        def in_force() -> None:
            for check in checks:
                try:
                    self._cluster.run_kubectl("auth", "can-i", *check)
                except RuntimeError:
                    raise NotYet(f"not yet allowed: {' '.join(check)}") from None

        eventually(in_force, what="the chart's RBAC to be in force", timeout=60)

    def replace(self, manifest: Manifest) -> None:
        path = self._tmp_path / "replaced.yaml"
        path.write_text(yaml.safe_dump(manifest))
        self._cluster.run_kubectl("apply", "-f", str(path))

    def kubeconfig(self, service_account: Manifest) -> Path:
        """A kubeconfig for the same API server that authenticates only as `service_account`."""
        meta = service_account["metadata"]
        token = self._cluster.run_kubectl(
            "create", "token", meta["name"], "--namespace", meta["namespace"], "--duration=1h"
        ).strip()
        source = yaml.safe_load(self._cluster.kubeconfig.read_text())
        context = _named(source["contexts"], source["current-context"])["context"]
        server = _named(source["clusters"], context["cluster"])["cluster"]
        ca = (
            server.get("certificate-authority-data")
            or base64.b64encode(
                (self._cluster.kubeconfig.parent / server["certificate-authority"]).read_bytes()
            ).decode()
        )
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "test", "cluster": {"server": server["server"], "certificate-authority-data": ca}}
            ],
            "users": [{"name": "operator", "user": {"token": token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "operator"}}],
            "current-context": "test",
        }
        path = self._tmp_path / "operator-kubeconfig"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o644)  # read by the container's non-root user
        return path

    def remove(self) -> None:
        for path in self._applied:
            self._cluster.run_kubectl("delete", "--ignore-not-found", "--wait=false", "-f", str(path))


def _named(entries: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(entry for entry in entries if entry["name"] == name)


@pytest.fixture
def chart_rbac(cluster: Cluster, tmp_path: Path) -> Iterator[ChartRbac]:
    rbac = ChartRbac(cluster, tmp_path)
    yield rbac
    rbac.remove()


def _store_and_external_secret(vs: Vaultsync) -> None:
    vs.fake_store("fake", [fake_entry("shop/db", {"password": "from-the-image"}, "3")])
    vs.external_secret(
        "db-creds",
        {
            "storeRef": {"name": "fake"},
            "refreshInterval": "1h",
            "data": [{"secretKey": "password", "remoteRef": {"key": "shop/db", "property": "password"}}],
        },
    )


@pytest.mark.parametrize("mode", ["namespaced", "cluster"])
def test_operator_image_syncs_a_secret_with_only_the_charts_rbac(
    mode: str,
    kube_api: KubeApi,
    install_crds: list[str],
    namespace: str,
    app_namespace: str,
    chart_rbac: ChartRbac,
) -> None:
    require_image()
    values: dict[str, Any] = {"watchNamespaces": [app_namespace]} if mode == "namespaced" else {}
    rbac = chart_rbac.apply(values, namespace)
    args = [f"--namespace={app_namespace}"] if mode == "namespaced" else []
    args += lease_args(rbac)
    account = next(m for m in rbac if m["kind"] == "ServiceAccount")
    vs = Vaultsync(kube_api, app_namespace)

    with OperatorContainer(chart_rbac.kubeconfig(account), namespace, args) as operator:
        _store_and_external_secret(vs)
        vs.wait_data("db-creds", {"password": "from-the-image"})
        vs.wait_reason("db-creds", "Synced")
        assert "from-the-image" not in operator.logs()
        assert "vaultsync" in operator.metrics()


def test_operator_image_reports_a_missing_rbac_rule_on_the_external_secret(
    kube_api: KubeApi,
    install_crds: list[str],
    namespace: str,
    app_namespace: str,
    chart_rbac: ChartRbac,
) -> None:
    require_image()
    rbac = chart_rbac.apply({"watchNamespaces": [app_namespace]}, namespace)
    role = next(m for m in rbac if m["kind"] == "Role" and m["metadata"]["namespace"] == app_namespace)
    secrets_rule = next(r for r in role["rules"] if r["resources"] == ["secrets"])
    secrets_rule["verbs"].remove("create")
    chart_rbac.replace(role)
    account = next(m for m in rbac if m["kind"] == "ServiceAccount")
    vs = Vaultsync(kube_api, app_namespace)

    with OperatorContainer(
        chart_rbac.kubeconfig(account), namespace, [f"--namespace={app_namespace}", *lease_args(rbac)]
    ) as operator:
        _store_and_external_secret(vs)

        def failed_clearly() -> dict[str, Any]:
            condition = vs.ready("db-creds")
            assert condition.get("status") == "False", f"Ready condition {condition}"
            return condition

        condition = eventually(failed_clearly, what="Ready=False naming the missing rule")
        message = condition["message"].lower()
        assert "forbidden" in message and "create" in message, condition
        assert not vs.secret_exists("db-creds")
        assert operator.running()


def test_two_operator_replicas_share_the_work_with_exactly_one_active(
    kube_api: KubeApi,
    install_crds: list[str],
    namespace: str,
    app_namespace: str,
    chart_rbac: ChartRbac,
) -> None:
    """replicaCount: 2 as the chart runs it: the same args and RBAC, one Lease."""
    require_image()
    objects = chart_rbac.apply({"replicaCount": 2, "watchNamespaces": [app_namespace]}, namespace)
    account = next(m for m in objects if m["kind"] == "ServiceAccount")
    args = [f"--namespace={app_namespace}", *lease_args(objects)]
    kubeconfig = chart_rbac.kubeconfig(account)
    vs = Vaultsync(kube_api, app_namespace)

    with (
        OperatorContainer(kubeconfig, namespace, args) as first,
        OperatorContainer(kubeconfig, namespace, args) as second,
    ):
        _store_and_external_secret(vs)
        vs.wait_data("db-creds", {"password": "from-the-image"}, timeout=30)

        # Only the Lease holder runs kopf and the scheduler: exactly one logs the sync.
        active = [c for c in (first, second) if '"message": "synced"' in c.logs()]
        assert len(active) == 1, f"{len(active)} replicas synced the Secret"
        assert sum("acquired the Lease" in c.logs() for c in (first, second)) == 1
