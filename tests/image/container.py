"""Run the operator image with Debian's docker client, as a test would run any container.

The image tests need three things: to know the image is there (built by `make image`),
to run one-off commands in it, and to run the operator itself in the background on the
host network, pointed at a test cluster with a kubeconfig of the test's choosing.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.env.operator import free_port

# Debian's client: a newer `docker` first on PATH may insist on the buildx plugin.
DOCKER = Path(os.environ.get("DOCKER", "/usr/bin/docker"))
IMAGE = os.environ.get("VAULTSYNC_IMAGE", "vaultsync:dev")
STARTUP_TIMEOUT_SECONDS = 60.0
# Where the operator's kubeconfig is mounted inside the container.
KUBECONFIG_IN_CONTAINER = "/etc/vaultsync/kubeconfig"


def docker(*args: str, timeout: float = 120) -> str:
    """Run the docker client; raise with its output when it fails."""
    result = subprocess.run(
        [str(DOCKER), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def require_image() -> str:
    """The image under test; fails the test (never skips it) when it cannot be run."""
    if not DOCKER.is_file():
        pytest.fail(f"{DOCKER} is missing: run `make image` (it installs docker.io)", pytrace=False)
    try:
        docker("image", "inspect", "--format", "{{.Id}}", IMAGE, timeout=30)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"image {IMAGE} is not available: run `make image`\n{exc}", pytrace=False)
    return IMAGE


class OperatorContainer:
    """`vaultsync run` in the image, on the host network, as the image's non-root user."""

    def __init__(self, kubeconfig: Path, operator_namespace: str, args: Sequence[str]) -> None:
        self.name = f"vaultsync-test-{uuid.uuid4().hex[:8]}"
        self.health_port = free_port()
        self.metrics_port = free_port()
        self._kubeconfig = kubeconfig
        self._operator_namespace = operator_namespace
        self._args = tuple(args)

    def __enter__(self) -> OperatorContainer:
        docker(
            "run", "--detach", "--name", self.name,
            "--network", "host",
            # The same restrictions the chart's securityContext applies.
            "--read-only", "--tmpfs", "/tmp:rw,size=64m",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--volume", f"{self._kubeconfig}:{KUBECONFIG_IN_CONTAINER}:ro",
            "--env", f"KUBECONFIG={KUBECONFIG_IN_CONTAINER}",
            "--env", f"VAULTSYNC_OPERATOR_NAMESPACE={self._operator_namespace}",
            "--env", "VAULTSYNC_ENABLE_FAKE_PROVIDER=true",  # the image tests' stores are fake
            IMAGE,
            "run",
            f"--health-port={self.health_port}",
            f"--metrics-port={self.metrics_port}",
            *self._args,
        )  # fmt: skip
        try:
            self._wait_healthy()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        print(f"--- operator container log ---\n{self.logs()}")
        docker("rm", "--force", self.name)

    def logs(self) -> str:
        result = subprocess.run(
            [str(DOCKER), "logs", self.name], capture_output=True, text=True, timeout=30, check=False
        )
        return result.stdout + result.stderr

    def running(self) -> bool:
        return docker("inspect", "--format", "{{.State.Running}}", self.name).strip() == "true"

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    def _wait_healthy(self) -> None:
        url = f"http://127.0.0.1:{self.health_port}/healthz"
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if not self.running():
                raise AssertionError(f"the operator container exited:\n{self.logs()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        raise AssertionError(f"the operator container was not healthy in time:\n{self.logs()}")
