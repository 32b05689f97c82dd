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

RESTART_ATTEMPTS = 3
RESTART_SETTLE_SECONDS = 3.0


class ChaosClusterError(RuntimeError):
    """The chaos cluster could not start, or a component could not be restarted."""


@dataclass(frozen=True)
class ChaosCluster:
    root: Path

    @property
    def kwok(self) -> shared.Kwok:
        # No nodes: the workloads have zero replicas. The audit policy logs metadata only.
        return shared.Kwok(
            NAME,
            self.root / "kwok",
            self.kubeconfig,
            extra_args=("--kube-audit-policy", str(AUDIT_POLICY)),
            nodes=0,
            ready_timeout=READY_TIMEOUT_SECONDS,
        )

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def cluster_dir(self) -> Path:
        return self.kwok.cluster_dir

    @property
    def audit_log(self) -> Path:
        return self.cluster_dir / "logs" / "audit.log"

    def kubectl(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return self.kwok.kubectl(*args, timeout=timeout)

    def up(self) -> None:
        """A fresh cluster every session: the audit log then holds this run's writes only."""
        tools.ensure_all()
        self.down()
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self.kwok.create()
            self.kwok.wait_ready()
        except shared.ClusterError as exc:
            raise ChaosClusterError(str(exc)) from exc
        if not self.audit_log.exists():
            raise ChaosClusterError(f"the API server writes no audit log at {self.audit_log}")

    def wait_ready(self) -> float:
        """Seconds until the API server answers /readyz and the default ServiceAccount exists."""
        started = time.monotonic()
        try:
            self.kwok.wait_ready()
        except shared.ClusterError as exc:
            log = self.cluster_dir / "logs" / "kube-apiserver.log"
            tail = log.read_text(errors="replace").splitlines()[-20:] if log.exists() else []
            raise ChaosClusterError(f"{exc}\nkube-apiserver.log ends:\n" + "\n".join(tail)) from exc
        return time.monotonic() - started

    def restart(self, component: str) -> None:
        """SIGKILL the component and start it again as it was started (same ports, same data)."""
        pid = self.kwok.pids()[component]
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
        log_path = self.cluster_dir / "logs" / f"{component}.log"
        # A component started again at once may die at start (its port not yet free): it is
        # started again, up to RESTART_ATTEMPTS times, and a last failure shows its log.
        for _ in range(RESTART_ATTEMPTS):
            with log_path.open("ab") as log:
                started = subprocess.Popen(
                    argv, cwd=cwd, env=environ, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            (self.cluster_dir / "pids" / f"{component}.pid").write_text(str(started.pid))
            try:
                started.wait(timeout=RESTART_SETTLE_SECONDS)
            except subprocess.TimeoutExpired:
                return
        tail = log_path.read_text(errors="replace").splitlines()[-20:]
        raise ChaosClusterError(f"{component} exits at start ({started.returncode}):\n" + "\n".join(tail))

    def down(self) -> None:
        if self.cluster_dir.exists():
            self.kwok.delete()
        shutil.rmtree(self.root, ignore_errors=True)


def _state(proc: Path) -> str:
    try:
        return (proc / "status").read_text()
    except OSError:
        return "zombie"


def chaos_cluster() -> ChaosCluster:
    return ChaosCluster(testenv_dir() / "chaos")
