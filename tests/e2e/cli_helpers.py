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
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from tests.env import paths
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


def remove_cluster_role(admin: KubeApi, name: str) -> None:
    admin.rbac.delete_cluster_role_binding(name)
    admin.rbac.delete_cluster_role(name)
