"""Which cluster the demo uses: the current kubeconfig if it answers, else kind, else our own.

The order is the one `make demo` promises on any machine (docs/architecture.md): a person who
already has a cluster sees vaultsync in it; one with Docker and kind gets a kind cluster; anyone else
gets the local control plane the tests use (etcd, API server, controller-manager and kwok,
built from source by `tests.env`), which needs neither Docker nor images.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client, config
from tests.env import cluster as local_cluster
from tests.env import paths

KIND_CLUSTER = "vaultsync-demo"
KIND_CONFIG = paths.REPO / "kind-config.yaml"
REACH_TIMEOUT_SECONDS = 5


@dataclass(frozen=True)
class Chosen:
    kubeconfig: Path
    how: str
    stop_hint: str


def current_kubeconfigs() -> list[Path]:
    """The kubeconfigs kubectl could use: the files named by $KUBECONFIG, then ~/.kube/config."""
    listed = [Path(p) for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    return [path for path in dict.fromkeys([*listed, Path.home() / ".kube" / "config"]) if path.is_file()]


def answers(kubeconfig: Path) -> str | None:
    """The server's version if the kubeconfig's cluster answers within a few seconds."""
    try:
        api = config.new_client_from_config(config_file=str(kubeconfig))
    except (config.ConfigException, OSError, ValueError):
        return None
    try:
        version = client.VersionApi(api).get_code(_request_timeout=REACH_TIMEOUT_SECONDS)
    except Exception:  # any failure means "not reachable", which is the answer
        return None
    finally:
        api.close()
    return str(version.git_version)


def choose(explicit: Path | None) -> Chosen:
    """The cluster to use, started if need be; raises RuntimeError when none can be had."""
    local = paths.kubeconfig()
    for candidate in [explicit] if explicit else current_kubeconfigs():
        if not answers(candidate):
            continue
        if candidate.resolve() == local.resolve():
            return Chosen(candidate, "the local control plane, already running", "make cluster-down")
        return Chosen(candidate, f"the current kubeconfig {candidate}", "it is yours; nothing to stop")
    if explicit is not None:
        raise RuntimeError(f"the cluster of {explicit} does not answer")
    if shutil.which("kind") and shutil.which("docker") and _docker_runs():
        return Chosen(_kind(), f"kind cluster {KIND_CLUSTER}", f"kind delete cluster --name {KIND_CLUSTER}")
    try:
        kubeconfig = local_cluster.up()
    except RuntimeError as exc:  # ClusterError, or BuildError from building its binaries
        raise RuntimeError(f"the local control plane did not start: {exc}") from exc
    return Chosen(kubeconfig, "the local control plane (kwok nodes, real controllers)", "make cluster-down")


def _docker_runs() -> bool:
    try:
        result = subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _kind() -> Path:
    existing = subprocess.run(
        ["kind", "get", "clusters"], capture_output=True, text=True, timeout=60, check=True
    ).stdout.split()
    if KIND_CLUSTER not in existing:
        command = ["kind", "create", "cluster", "--name", KIND_CLUSTER, "--wait", "180s"]
        if KIND_CONFIG.is_file():
            command += ["--config", str(KIND_CONFIG)]
        subprocess.run(command, timeout=600, check=True)
    kubeconfig = paths.testenv_dir() / f"{KIND_CLUSTER}.kubeconfig"
    kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    text = subprocess.run(
        ["kind", "get", "kubeconfig", "--name", KIND_CLUSTER],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    kubeconfig.write_text(text)
    return kubeconfig
