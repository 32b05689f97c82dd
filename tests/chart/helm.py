"""Render, install and remove the chart with the pinned helm, for the chart and image tests.

Both test packages need the same few things from helm: the binary (built like every other
test-environment tool), the chart rendered with a given set of values, and an install that
can take over CRDs another test already applied. They live here so that each test reads as
the behaviour it checks.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.env import paths, tools, versions
from tests.env.kube import Cluster

CHART = paths.REPO / "charts" / "vaultsync"
KUBE_VERSION = versions.KUBERNETES.removeprefix("v")
HELM_TIMEOUT_SECONDS = 300
Manifest = dict[str, Any]


def value_sets(watch: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The value sets every chart test runs with; `watch` names the namespaced mode's namespaces."""
    return {
        "default": {},
        "namespaced": {"watchNamespaces": list(watch)},
        "ha": {"replicaCount": 2},
        "ha-namespaced": {"replicaCount": 3, "watchNamespaces": list(watch)},
        "crds-off": {"installCRDs": False},
        "network-policy": {"networkPolicy": NETWORK_POLICY, "fakeProvider": {"enabled": True}},
    }


# The optional NetworkPolicy as an admin would fill it in (addresses are examples).
NETWORK_POLICY = {
    "enabled": True,
    "apiServer": {"cidrs": ["10.96.0.1/32", "172.18.0.2/32"], "ports": [6443]},
    "vaultEndpoints": [
        {"cidr": "10.20.0.0/16", "ports": [8200]},
        {"cidr": "0.0.0.0/0", "ports": [443]},
    ],
    "ingressFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
}


def helm_binary() -> Path:
    """The pinned helm, built from the Go module proxy on first use."""
    helm = tools.tool("helm")
    tools.ensure_module(next(module for module in tools.MODULES if helm in module.tools))
    return helm.current


def run_helm(*args: str, kubeconfig: Path | None = None) -> str:
    """Run helm; raise with its output when it fails."""
    command = [str(helm_binary()), *args]
    if kubeconfig is not None:
        command += ["--kubeconfig", str(kubeconfig)]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=HELM_TIMEOUT_SECONDS, check=False
    )
    if result.returncode != 0:
        raise HelmFailed(f"helm {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


class HelmFailed(RuntimeError):
    """helm exited non-zero; the message has its output."""


def values_file(values: Mapping[str, Any], directory: Path) -> Path:
    """`values` written as a file for `--values`, next to the test's other files."""
    with tempfile.NamedTemporaryFile(
        "w", dir=directory, prefix="values-", suffix=".yaml", delete=False
    ) as file:
        yaml.safe_dump(dict(values), file)
    return Path(file.name)


def template(
    values: Mapping[str, Any], directory: Path, *, release: str = "vs", namespace: str = "vaultsync"
) -> str:
    """The chart rendered offline (hooks included), as helm prints it."""
    return run_helm(
        "template",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--kube-version",
        KUBE_VERSION,
        "--values",
        str(values_file(values, directory)),
    )


def render(
    values: Mapping[str, Any], directory: Path, *, release: str = "vs", namespace: str = "vaultsync"
) -> list[Manifest]:
    """The chart rendered offline, as parsed objects."""
    text = template(values, directory, release=release, namespace=namespace)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def find(manifests: Sequence[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)]


def only(manifests: Sequence[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = find(manifests, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def adopt_existing_crds(
    cluster: Cluster, manifests: Sequence[Manifest], release: str, namespace: str
) -> None:
    """Let the release take over vaultsync CRDs that a test already applied.

    Helm refuses to install an object it does not own; CRDs applied by the `install_crds`
    fixture get the ownership metadata helm checks for (the documented way to adopt).
    """
    existing = set(cluster.run_kubectl("get", "crd", "-o", "name").split())
    for crd in find(manifests, "CustomResourceDefinition"):
        name = crd["metadata"]["name"]
        if (
            not name.endswith(".vaultsync.io")
            or f"customresourcedefinition.apiextensions.k8s.io/{name}" not in existing
        ):
            continue
        cluster.run_kubectl(
            "annotate",
            "--overwrite",
            "crd",
            name,
            f"meta.helm.sh/release-name={release}",
            f"meta.helm.sh/release-namespace={namespace}",
        )
        cluster.run_kubectl("label", "--overwrite", "crd", name, "app.kubernetes.io/managed-by=Helm")
