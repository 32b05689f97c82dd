"""The chaos suite's own kwok cluster: an API server with an audit log, and restarts on cue.

The suite restarts kube-apiserver and etcd and needs the API server's audit log to prove
that one replica wrote at a time; doing either to the shared test cluster (`tests.env.cluster`)
would disturb every other suite, so this one gets a cluster of its own, from the same
locally built binaries, without nodes (the workloads have zero replicas: only their
Deployment objects and ReplicaSets matter). Its state lives in `.testenv/chaos/`.

A component is restarted the way a kubelet restarts a static pod: SIGKILL, then the same
command line, working directory and environment, read from /proc before the kill.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.env import cluster as shared
from tests.env import tools
from tests.env.paths import testenv_dir

NAME = "vaultsync-chaos"
AUDIT_POLICY = Path(__file__).with_name("audit-policy.yaml")
READY_TIMEOUT_SECONDS = 180.0


class ChaosClusterError(RuntimeError):
    """The chaos cluster could not start, or a component could not be restarted."""


@dataclass(frozen=True)
class ChaosCluster:
    root: Path

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def cluster_dir(self) -> Path:
        return self.root / "kwok" / "clusters" / NAME

    @property
    def audit_log(self) -> Path:
        return self.cluster_dir / "logs" / "audit.log"

    def _env(self) -> dict[str, str]:
        env = shared._env()
        env["KWOK_WORKDIR"] = str(self.root / "kwok")
        return env

    def kwokctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [shared._binary("kwokctl"), "--name", NAME, "--config", str(shared.KWOKCTL_CONFIG), *args]
        result = subprocess.run(command, env=self._env(), capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            raise ChaosClusterError(
                f"`kwokctl {' '.join(args)}` failed (exit {result.returncode}):\n"
                f"{result.stdout}{result.stderr}"
            )
        return result

    def kubectl(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        command = [shared._binary("kubectl"), "--kubeconfig", str(self.kubeconfig), *args]
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            return subprocess.CompletedProcess(command, 124, "", f"timed out: {exc}")

    def healthy(self) -> bool:
        return self.kubectl("get", "--raw", "/readyz", "--request-timeout=5s", timeout=10).returncode == 0

    def up(self) -> None:
        """A fresh cluster every session: the audit log then holds this run's writes only."""
        tools.ensure_all()
        self.down()
        self.root.mkdir(parents=True, exist_ok=True)
        self.kwokctl(
            "create",
            "cluster",
            "--runtime",
            "binary",
            "--kubeconfig",
            str(self.kubeconfig),
            "--kube-audit-policy",
            str(AUDIT_POLICY),
            "--etcd-binary",
            shared._binary("etcd"),
            "--kube-apiserver-binary",
            shared._binary("kube-apiserver"),
            "--kube-controller-manager-binary",
            shared._binary("kube-controller-manager"),
            "--kube-scheduler-binary",
            shared._binary("kube-scheduler"),
            "--kwok-controller-binary",
            shared._binary("kwok"),
        )
        self.wait_ready()
        if not self.audit_log.exists():
            raise ChaosClusterError(f"the API server writes no audit log at {self.audit_log}")

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> float:
        """Seconds until the API server answers /readyz and the default ServiceAccount exists."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.healthy() and self.kubectl("get", "serviceaccount", "default").returncode == 0:
                return time.monotonic() - started
            time.sleep(0.5)
        raise ChaosClusterError(
            f"the chaos cluster's API server was not ready after {timeout:.0f}s; "
            f"see {self.cluster_dir / 'logs'}"
        )

    def pids(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for pid_file in (self.cluster_dir / "pids").glob("*.pid"):
            text = pid_file.read_text().strip()
            if text.isdigit():
                found[pid_file.stem] = int(text)
        return found

    def restart(self, component: str) -> None:
        """SIGKILL the component and start it again as it was started (same ports, same data)."""
        pid = self.pids()[component]
        proc = Path(f"/proc/{pid}")
        try:
            argv = [a.decode() for a in (proc / "cmdline").read_bytes().split(b"\0") if a]
            cwd = os.readlink(proc / "cwd")
            environ = dict(
                item.decode().split("=", 1)
                for item in (proc / "environ").read_bytes().split(b"\0")
                if b"=" in item
            )
        except OSError as exc:
            raise ChaosClusterError(f"{component} (pid {pid}) is not running: {exc}") from exc
        os.kill(pid, signal.SIGKILL)
        while proc.exists() and "zombie" not in _state(proc):
            time.sleep(0.05)
        log = (self.cluster_dir / "logs" / f"{component}.log").open("ab")
        started = subprocess.Popen(
            argv, cwd=cwd, env=environ, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        (self.cluster_dir / "pids" / f"{component}.pid").write_text(str(started.pid))

    def down(self) -> None:
        if not self.cluster_dir.exists():
            return
        pids = self.pids()
        self.kwokctl("delete", "cluster", "--kubeconfig", str(self.kubeconfig), check=False)
        for component, pid in pids.items():
            if shared._still_running(component, pid):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


def _state(proc: Path) -> str:
    try:
        return (proc / "status").read_text()
    except OSError:
        return "zombie"


def chaos_cluster() -> ChaosCluster:
    return ChaosCluster(testenv_dir() / "chaos")
