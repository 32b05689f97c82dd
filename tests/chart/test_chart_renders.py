"""The chart renders what a platform team expects, for every supported set of values.

These tests need only the helm binary, not a cluster: lint, the hardened Deployment, the
RBAC of each mode (exactly the rules the operator needs, each with its reason), leader
election on a Lease for every release, and a values schema that rejects wrong types.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from tests.chart.helm import (
    CHART,
    HelmFailed,
    Manifest,
    find,
    only,
    render,
    run_helm,
    template,
    value_sets,
    values_file,
)

WATCHED = ["team-a", "team-b"]
VALUE_SETS = value_sets(WATCHED)
FULLNAME = "vs-vaultsync"

Permission = tuple[str, str, str]  # (apiGroup, resource, verb)

# What the operator may do in a namespace it serves. Changing this is a security decision:
# update templates/rbac.yaml (with the reason) and this table together.
NAMESPACED_PERMISSIONS = {
    *(("vaultsync.io", "externalsecrets", v) for v in ("get", "list", "watch", "create", "update", "delete")),
    *(("vaultsync.io", "secretstores", v) for v in ("get", "list", "watch")),
    ("vaultsync.io", "externalsecrets/status", "patch"),
    ("vaultsync.io", "secretstores/status", "patch"),
    *(("", "secrets", v) for v in ("get", "list", "watch", "create", "update", "delete")),
    ("", "serviceaccounts/token", "create"),
    ("", "events", "create"),
    *(("", "configmaps", v) for v in ("get", "list", "watch")),
    *(
        (group, r, v)
        for group, r in (
            ("apps", "deployments"),
            ("apps", "statefulsets"),
            ("apps", "daemonsets"),
            ("batch", "cronjobs"),
            ("argoproj.io", "rollouts"),
        )
        for v in ("get", "list", "watch", "patch")
    ),
}
CLUSTER_PERMISSIONS = {
    *(("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("list", "watch")),
    *(("", "namespaces", v) for v in ("get", "list", "watch")),
    *(("vaultsync.io", "clustersecretstores", v) for v in ("get", "list", "watch")),
    ("vaultsync.io", "clustersecretstores/status", "patch"),
    *(("vaultsync.io", "clusterexternalsecrets", v) for v in ("list", "watch")),
    ("vaultsync.io", "clusterexternalsecrets/status", "patch"),
    ("authentication.k8s.io", "tokenreviews", "create"),
}


def permissions(role: Manifest) -> set[Permission]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def deployment(manifests: Iterable[Manifest]) -> Manifest:
    return only(list(manifests), "Deployment", FULLNAME)


def container(manifests: Iterable[Manifest]) -> dict[str, Any]:
    containers = deployment(manifests)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


@pytest.mark.parametrize("name", VALUE_SETS)
def test_helm_lint_passes_strictly_for_every_value_set(name: str, tmp_path: Path) -> None:
    run_helm("lint", "--strict", str(CHART), "--values", str(values_file(VALUE_SETS[name], tmp_path)))


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_value_set_renders_a_hardened_operator_deployment(name: str, tmp_path: Path) -> None:
    manifests = render(VALUE_SETS[name], tmp_path)
    pod = deployment(manifests)["spec"]["template"]["spec"]
    operator = container(manifests)

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert operator["securityContext"]["readOnlyRootFilesystem"] is True
    assert operator["securityContext"]["allowPrivilegeEscalation"] is False
    assert operator["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    for bound in ("requests", "limits"):
        assert set(operator["resources"][bound]) == {"cpu", "memory"}
    for probe in ("livenessProbe", "readinessProbe"):
        assert operator[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {"name": "tmp", "mountPath": "/tmp"} in operator["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]
    assert operator["args"][0] == "run"
    assert {"--health-port=8080", "--metrics-port=9090"} <= set(operator["args"])
    env = {e["name"]: e for e in operator["env"]}
    assert env["VAULTSYNC_OPERATOR_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == ("metadata.namespace")
    assert env["VAULTSYNC_SERVICE_ACCOUNT"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.serviceAccountName"
    assert pod["serviceAccountName"] == FULLNAME
    # The kubelet's Docker-link variables of the release's Service (VAULTSYNC_METRICS_PORT=tcp://...)
    # would land in the operator's VAULTSYNC_* settings: seen crashing it on kind.
    assert pod["enableServiceLinks"] is False


def test_default_values_watch_the_whole_cluster_with_one_cluster_role(tmp_path: Path) -> None:
    manifests = render({}, tmp_path)

    role = only(manifests, "ClusterRole", FULLNAME)
    assert permissions(role) == NAMESPACED_PERMISSIONS | CLUSTER_PERMISSIONS
    binding = only(manifests, "ClusterRoleBinding", FULLNAME)
    assert binding["roleRef"]["name"] == FULLNAME
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": "vaultsync"}]
    # The one Role: the leader election Lease, in the release namespace.
    assert [r["metadata"]["name"] for r in find(manifests, "Role")] == [f"{FULLNAME}-leader-election"]
    args = container(manifests)["args"]
    assert not [a for a in args if a.startswith(("--namespace", "--peering"))]
    assert find(manifests, "PodDisruptionBudget") == []


def test_namespaced_mode_grants_namespaced_rights_only_in_the_listed_namespaces(
    tmp_path: Path,
) -> None:
    manifests = render(VALUE_SETS["namespaced"], tmp_path)

    roles = {r["metadata"]["namespace"]: r for r in find(manifests, "Role", FULLNAME)}
    assert set(roles) == set(WATCHED)
    for role in roles.values():
        assert permissions(role) == NAMESPACED_PERMISSIONS
    bindings = find(manifests, "RoleBinding", FULLNAME)
    assert {b["metadata"]["namespace"] for b in bindings} == set(WATCHED)
    # Cluster-wide, only the reads the operator cannot avoid: no Secrets, no workloads.
    assert find(manifests, "ClusterRole", FULLNAME) == []
    cluster_role = only(manifests, "ClusterRole", f"{FULLNAME}-cluster")
    assert permissions(cluster_role) == CLUSTER_PERMISSIONS
    # Its own HMAC key Secret in the release namespace, and no other Secret there.
    hmac_role = only(manifests, "Role", f"{FULLNAME}-hmac-key")
    assert hmac_role["metadata"]["namespace"] == "vaultsync"
    named = [r for r in hmac_role["rules"] if r.get("resourceNames")]
    assert named == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["vaultsync-hmac-key"],
            "verbs": ["get"],
        }
    ]
    # A token of its own ServiceAccount (for Vault), and of no other ServiceAccount there.
    own_token = only(manifests, "Role", f"{FULLNAME}-own-token")
    assert own_token["metadata"]["namespace"] == "vaultsync"
    assert own_token["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["serviceaccounts/token"],
            "resourceNames": [FULLNAME],
            "verbs": ["create"],
        }
    ]
    assert (
        only(manifests, "RoleBinding", f"{FULLNAME}-own-token")["roleRef"]["name"] == f"{FULLNAME}-own-token"
    )
    args = container(manifests)["args"]
    assert [a for a in args if a.startswith("--namespace")] == [f"--namespace={ns}" for ns in WATCHED]


def test_more_than_one_replica_runs_one_active_operator_through_the_lease(tmp_path: Path) -> None:
    manifests = render(VALUE_SETS["ha"], tmp_path)

    assert deployment(manifests)["spec"]["replicas"] == 2
    assert not [m for m in manifests if "kopf.dev" in str(m.get("apiVersion", "")) + str(m["metadata"])]
    assert not [a for a in container(manifests)["args"] if a.startswith("--peering")]
    role = only(manifests, "ClusterRole", FULLNAME)
    assert permissions(role) == NAMESPACED_PERMISSIONS | CLUSTER_PERMISSIONS
    assert only(manifests, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


@pytest.mark.parametrize("values", [{}, {"replicaCount": 3, "watchNamespaces": WATCHED}], ids=["one", "ha"])
def test_every_release_elects_a_leader_on_its_own_lease(values: dict[str, Any], tmp_path: Path) -> None:
    """Always on: even one replica overlaps its successor during a rollout."""
    manifests = render(values, tmp_path)

    args = container(manifests)["args"]
    assert "--leader-elect" in args
    assert f"--leader-election-id={FULLNAME}" in args
    assert {"--leader-elect-lease-duration=15s", "--leader-elect-renew-deadline=10s"} <= set(args)
    assert "--leader-elect-retry-period=2s" in args
    role = only(manifests, "Role", f"{FULLNAME}-leader-election")
    assert role["metadata"]["namespace"] == "vaultsync"
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [FULLNAME],
            "verbs": ["get", "update"],
        },
    ]
    binding = only(manifests, "RoleBinding", f"{FULLNAME}-leader-election")
    assert binding["roleRef"]["name"] == f"{FULLNAME}-leader-election"
    # The new pod waits for the Lease the old one releases: pods may overlap.
    strategy = deployment(manifests)["spec"]["strategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}


def test_crds_can_be_left_out(tmp_path: Path) -> None:
    assert find(render(VALUE_SETS["crds-off"], tmp_path), "CustomResourceDefinition") == []


def test_every_rbac_rule_says_why_it_is_needed(tmp_path: Path) -> None:
    for name in ("default", "ha-namespaced"):
        lines = template(VALUE_SETS[name], tmp_path).splitlines()
        rules = [i for i, line in enumerate(lines) if line.strip().startswith("- apiGroups:")]
        assert rules
        for index in rules:
            assert lines[index - 1].strip().startswith("#"), (
                f"rule without a comment in value set {name!r}: {lines[index]}"
            )


def test_metrics_service_and_optional_service_monitor_target_the_metrics_port(
    tmp_path: Path,
) -> None:
    manifests = render({"metrics": {"serviceMonitor": {"enabled": True}}}, tmp_path)

    service = only(manifests, "Service", f"{FULLNAME}-metrics")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]
    monitor = only(manifests, "ServiceMonitor", FULLNAME)
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert find(render({}, tmp_path), "ServiceMonitor") == []


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicaCount": "two"}, "/replicaCount"),
        ({"installCRDs": "yes"}, "/installCRDs"),
        ({"watchNamespaces": "team-a"}, "/watchNamespaces"),
        ({"watchNamespaces": ["Not_A_Namespace"]}, "/watchNamespaces/0"),
        ({"image": {"tga": "typo"}}, "tga"),
        ({"metrics": {"port": 70000}}, "/metrics/port"),
        ({"resources": {"limits": {"memory": "lots"}}}, "/resources/limits/memory"),
        ({"replicaCountt": 2}, "replicaCountt"),
    ],
)
def test_values_schema_rejects_wrong_types_and_unknown_keys(
    values: dict[str, Any], complaint: str, tmp_path: Path
) -> None:
    with pytest.raises(HelmFailed, match="values don't meet the specifications") as failure:
        template(values, tmp_path)
    assert complaint in str(failure.value)
