"""Kubernetes clients and setup steps the end-to-end fixtures share.

The fixtures in tests/conftest.py stay thin; what they do to the cluster (build clients from
a kubeconfig, make a throwaway namespace, install the CRDs) lives here so that scripts and
benchmarks can reuse it against the same cluster.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

from tests.env.waiting import eventually

CRD_ESTABLISHED_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class Cluster:
    """A cluster the tests may use: its kubeconfig, the kubectl to drive it, and whether
    it is the local one this repository built (and whose version it therefore knows)."""

    kubeconfig: Path
    kubectl: Path
    local: bool

    def run_kubectl(self, *args: str) -> str:
        """Run kubectl against this cluster; raise with its output if it fails."""
        result = subprocess.run(
            [str(self.kubectl), "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
            )
        return result.stdout


@dataclass(frozen=True)
class KubeApi:
    """The synchronous kubernetes client, authenticated as the kubeconfig's user."""

    client: Any
    core: Any
    apps: Any
    rbac: Any
    authentication: Any
    apiextensions: Any
    custom: Any
    version: Any

    @classmethod
    def for_client(cls, api_client: Any) -> KubeApi:
        return cls(
            client=api_client,
            core=client.CoreV1Api(api_client),
            apps=client.AppsV1Api(api_client),
            rbac=client.RbacAuthorizationV1Api(api_client),
            authentication=client.AuthenticationV1Api(api_client),
            apiextensions=client.ApiextensionsV1Api(api_client),
            custom=client.CustomObjectsApi(api_client),
            version=client.VersionApi(api_client),
        )

    @classmethod
    def from_kubeconfig(cls, kubeconfig: Path) -> KubeApi:
        return cls.for_client(client.ApiClient(configuration(kubeconfig)))


def configuration(kubeconfig: Path) -> Any:
    """A client Configuration for the kubeconfig's current context."""
    conf = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=conf)
    return conf


def bearer_token_api(kubeconfig: Path, token: str) -> KubeApi:
    """Clients that reach the same API server but authenticate only with `token`."""
    conf = configuration(kubeconfig)
    conf.cert_file = None
    conf.key_file = None
    conf.username = None
    conf.password = None
    conf.refresh_api_key_hook = None
    conf.api_key = {"BearerToken": token}
    conf.api_key_prefix = {"BearerToken": "Bearer"}
    return KubeApi.for_client(client.ApiClient(conf))


def create_namespace(api: KubeApi, prefix: str) -> str:
    """Create a namespace with a server-generated unique name and return that name."""
    body = client.V1Namespace(
        metadata=client.V1ObjectMeta(
            generate_name=prefix, labels={"app.kubernetes.io/part-of": "vaultsync-tests"}
        )
    )
    created = api.core.create_namespace(body)
    return str(created.metadata.name)


def delete_namespace(api: KubeApi, name: str) -> None:
    """Start deleting the namespace; the namespace controller removes what is inside."""
    try:
        api.core.delete_namespace(name, propagation_policy="Background")
    except client.ApiException as exc:
        if exc.status != 404:
            raise


def crd_files(directory: Path) -> dict[Path, list[str]]:
    """The YAML files of `directory` that define CRDs, with the names each one defines."""
    found: dict[Path, list[str]] = {}
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        names = [
            document["metadata"]["name"]
            for document in yaml.safe_load_all(path.read_text())
            if document and document.get("kind") == "CustomResourceDefinition"
        ]
        if names:
            found[path] = names
    return found


def install_crds(cluster: Cluster, api: KubeApi, directory: Path) -> list[str]:
    """Server-side apply every CRD in `directory` and wait until each is Established."""
    files = crd_files(directory)
    if not files:
        return []
    sources = [arg for path in files for arg in ("-f", str(path))]
    cluster.run_kubectl(
        "apply", "--server-side", "--force-conflicts", "--field-manager=vaultsync-tests", *sources
    )
    names = [name for defined in files.values() for name in defined]
    for name in names:
        eventually(
            partial(_assert_established, api, name),
            what=f"CRD {name} to be Established",
            timeout=CRD_ESTABLISHED_TIMEOUT_SECONDS,
        )
    return names


def _assert_established(api: KubeApi, name: str) -> None:
    crd = api.apiextensions.read_custom_resource_definition(name)
    conditions = {c.type: c.status for c in (crd.status.conditions or [])}
    assert conditions.get("Established") == "True", f"conditions {conditions}"
