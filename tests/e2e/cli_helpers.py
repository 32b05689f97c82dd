"""Running the `vaultsync` CLI as its users do, and the users themselves.

The CLI runs as a subprocess (`python -m vaultsync`, what the `vaultsync` and
`kubectl-vaultsync` entry points call) with a kubeconfig: the admin's, or an app team's
holding only its ServiceAccount token, so the API server's RBAC decides what it may see.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from tests.e2e.tenancy.actors import TENANT_ACCOUNT, Tenant, create_tenant
from tests.env import kube, paths
from tests.env.kube import KubeApi

CLI_TIMEOUT_SECONDS = 300.0


def vaultsync_cli(
    *args: str, kubeconfig: Path, timeout: float = CLI_TIMEOUT_SECONDS
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "PYTHONPATH": os.pathsep.join([str(paths.REPO / "operator"), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-m", "vaultsync", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def output_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.stdout.strip(), f"no output; stderr: {result.stderr}"
    return json.loads(result.stdout)


def token_kubeconfig(admin_kubeconfig: Path, token: str, namespace: str, path: Path) -> Path:
    """A kubeconfig for the same API server that authenticates with `token` only; its
    context's namespace is `namespace` (as an app team's kubeconfig would be)."""
    admin = yaml.safe_load(admin_kubeconfig.read_text())
    context = next(c["context"] for c in admin["contexts"] if c["name"] == admin["current-context"])
    cluster = next(c for c in admin["clusters"] if c["name"] == context["cluster"])
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": "app-team", "user": {"token": token}}],
        "contexts": [
            {
                "name": "app-team",
                "context": {"cluster": cluster["name"], "user": "app-team", "namespace": namespace},
            }
        ],
        "current-context": "app-team",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@contextmanager
def app_team(admin: KubeApi, kubeconfig: Path, *, may_list_namespaces: bool = False) -> Iterator[Tenant]:
    """An app team (tests/e2e/tenancy/actors.py): its namespace and token, nothing elsewhere;
    `may_list_namespaces`: it may also list the namespaces, as many platforms allow."""
    team = create_tenant(admin, kubeconfig)
    role = allow_listing_namespaces(admin, team.namespace, TENANT_ACCOUNT) if may_list_namespaces else None
    try:
        yield team
    finally:
        if role is not None:
            admin.rbac.delete_cluster_role_binding(role)
            admin.rbac.delete_cluster_role(role)
        team.api.client.close()
        kube.delete_namespace(admin, team.namespace)


def allow_listing_namespaces(admin: KubeApi, namespace: str, service_account: str) -> str:
    """Lets a ServiceAccount list (only) namespaces cluster-wide, as many platforms allow
    their teams; returns the ClusterRole's name, also that of its binding."""
    name = f"list-namespaces-{namespace}"
    meta = client.V1ObjectMeta(name=name)
    rule = client.V1PolicyRule(api_groups=[""], resources=["namespaces"], verbs=["list"])
    admin.rbac.create_cluster_role(client.V1ClusterRole(metadata=meta, rules=[rule]))
    admin.rbac.create_cluster_role_binding(
        client.V1ClusterRoleBinding(
            metadata=meta,
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=name),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name=service_account, namespace=namespace)],
        )
    )
    return name
