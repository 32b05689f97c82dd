"""The kind cluster the kind suite runs on, and what it puts there: images and the chart.

`make e2e-kind` creates the cluster (kind-config.yaml, the node image from tests/env/kindnode
or a public kindest/node) and passes it here through VAULTSYNC_KIND_*; this module loads the
operator and app images into its nodes and installs the chart, so the operator runs as the
chart's pod with the chart's RBAC, probes, read-only root and ServiceAccount token.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.env import paths, tools

APP_SOURCE = paths.REPO / "tests" / "kind" / "app"
APP_REPOSITORY = "vaultsync.local/kind-app"
RELEASE = "vaultsync"
RELEASE_NAMESPACE = "vaultsync"
CHART = paths.REPO / "charts" / "vaultsync"
COMMAND_TIMEOUT_SECONDS = 600


class KindError(RuntimeError):
    """The kind cluster, an image load or the chart install failed; the message says which."""


@dataclass(frozen=True)
class KindCluster:
    """A kind cluster made by `make e2e-kind`: its name, kubeconfig and how to call kind."""

    name: str
    kubeconfig: Path
    kind_command: str
    docker: str
    operator_image: str

    @classmethod
    def from_environment(cls) -> KindCluster:
        missing = [
            name
            for name in ("VAULTSYNC_KIND_KUBECONFIG", "VAULTSYNC_KIND_CLUSTER", "VAULTSYNC_KIND_RUN")
            if not os.environ.get(name)
        ]
        if missing:
            raise KindError(
                f"{', '.join(missing)} unset: run the kind suite through `make e2e-kind`, which "
                "creates the cluster and loads the images first"
            )
        return cls(
            name=os.environ["VAULTSYNC_KIND_CLUSTER"],
            kubeconfig=Path(os.environ["VAULTSYNC_KIND_KUBECONFIG"]),
            kind_command=os.environ["VAULTSYNC_KIND_RUN"],
            docker=os.environ.get("DOCKER", "/usr/bin/docker"),
            operator_image=os.environ.get("IMAGE", "vaultsync:dev"),
        )

    def kind(self, *args: str) -> str:
        """Run kind (through the Makefile's KIND_RUN: the docker shim where needed)."""
        command = f"{self.kind_command} {' '.join(args)}"
        return _run(["bash", "-c", command])

    def load(self, image: str) -> None:
        self.kind("load", "docker-image", image, "--name", self.name)

    def helm(self, *args: str) -> str:
        helm = tools.tool("helm").current
        return _run([str(helm), "--kubeconfig", str(self.kubeconfig), *args])


def _run(command: list[str], **kwargs: object) -> str:
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
        check=False,
        **kwargs,  # type: ignore[arg-type]
    )
    if result.returncode != 0:
        raise KindError(
            f"{' '.join(command)[:200]} failed ({result.returncode}):\n"
            f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    return result.stdout


def app_image(docker: str) -> str:
    """Build (or reuse) the app image: tests/kind/app as a static binary on an empty root."""
    digest = hashlib.sha256()
    for source in sorted(APP_SOURCE.iterdir()):
        digest.update(source.name.encode() + source.read_bytes())
    tag = f"{APP_REPOSITORY}:{digest.hexdigest()[:12]}"
    if subprocess.run([docker, "image", "inspect", tag], capture_output=True, check=False).returncode == 0:
        return tag
    with tempfile.TemporaryDirectory(prefix="kind-app-") as scratch:
        context = Path(scratch)
        _run(
            ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(context / "kind-app"), "."],
            cwd=APP_SOURCE,
            env={**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local"},
        )
        (context / "Dockerfile").write_text(
            'FROM scratch\nCOPY kind-app /kind-app\nUSER 65532:65532\nENTRYPOINT ["/kind-app"]\n'
        )
        _run([docker, "build", "-q", "-t", tag, str(context)], env={**os.environ, "DOCKER_BUILDKIT": "1"})
    return tag


def install_operator(cluster: KindCluster, watch_namespace: str, *extra: str) -> None:
    """`helm upgrade --install` of the chart, the operator watching `watch_namespace` only."""
    repository, _, tag = cluster.operator_image.rpartition(":")
    cluster.helm(
        "upgrade",
        "--install",
        RELEASE,
        str(CHART),
        "--namespace",
        RELEASE_NAMESPACE,
        "--create-namespace",
        "--set",
        f"image.repository={repository}",
        "--set",
        f"image.tag={tag}",
        "--set",
        "fakeProvider.enabled=true",
        "--set",
        f"watchNamespaces={{{watch_namespace}}}",
        *extra,
        "--wait",
        "--timeout",
        "300s",
    )
