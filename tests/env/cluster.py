"""Start, reuse and remove the local Kubernetes cluster the end-to-end tests run against.

kind needs container images, which these machines cannot pull, so the cluster is made by
kwokctl's binary runtime from the binaries `tests.env.tools` builds: a real etcd, API server,
controller-manager and scheduler, with kwok simulating the nodes and the pods' kubelets.
The cluster belongs to this checkout: its state lives in `.testenv/`, its kubeconfig is
`.testenv/kubeconfig`. `Kwok` is one such cluster; the benchmark (bench/cluster.py) makes a
second one with it.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.env import tools, versions
from tests.env.paths import current_bin_dir, kubeconfig, testenv_dir

NAME = "vaultsync"
KWOKCTL_CONFIG = Path(__file__).with_name("kwokctl.yaml")
NODES = 2
READY_TIMEOUT_SECONDS = 180.0
_URL = re.compile(r"https?://")


class ClusterError(RuntimeError):
    """The cluster could not be started, reused or removed; the message says why."""


@dataclass(frozen=True)
class Status:
    running: bool
    kubeconfig: Path
    detail: str


@dataclass(frozen=True)
class Kwok:
    """One kwok cluster made from the locally built binaries; the benchmark makes its own.

    `name` names it for kwokctl, `workdir` holds its state, `kubeconfig` is where kwokctl
    writes the kubeconfig, `extra_args` are more `kwokctl create cluster` flags.
    """

    name: str
    workdir: Path
    kubeconfig: Path
    extra_args: tuple[str, ...] = ()
    nodes: int = NODES
    ready_timeout: float = READY_TIMEOUT_SECONDS

    @property
    def cluster_dir(self) -> Path:
        return self.workdir / "clusters" / self.name

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        # kwokctl finds kubectl on PATH; make sure it is ours, not whatever the machine has.
        env["PATH"] = f"{current_bin_dir()}{os.pathsep}{env.get('PATH', '')}"
        env["KWOK_WORKDIR"] = str(self.workdir)
        # kwokctl picks component flags by release; tell it the ones we built, not its defaults.
        env["KWOK_KUBE_VERSION"] = versions.KUBERNETES
        env["KWOK_ETCD_VERSION"] = versions.ETCD.lstrip("v")
        return env

    def kwokctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [_binary("kwokctl"), "--name", self.name, "--config", str(KWOKCTL_CONFIG), *args]
        result = subprocess.run(command, env=self.env(), capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            output = f"{result.stdout}{result.stderr}"
            raise ClusterError(f"`kwokctl {' '.join(args)}` failed (exit {result.returncode}):\n{output}")
        return result

    def kubectl(
        self, *args: str, timeout: float = 30, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run our kubectl against this cluster; never raises on a non-zero exit."""
        command = [_binary("kubectl"), "--kubeconfig", str(self.kubeconfig), *args]
        try:
            return subprocess.run(
                command, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            return subprocess.CompletedProcess(command, 124, "", f"timed out: {exc}")

    def create_args(self) -> list[str]:
        return [
            "create",
            "cluster",
            "--runtime",
            "binary",
            "--kubeconfig",
            str(self.kubeconfig),
            "--etcd-binary",
            _binary("etcd"),
            "--kube-apiserver-binary",
            _binary("kube-apiserver"),
            "--kube-controller-manager-binary",
            _binary("kube-controller-manager"),
            "--kube-scheduler-binary",
            _binary("kube-scheduler"),
            "--kwok-controller-binary",
            _binary("kwok"),
            *self.extra_args,
        ]

    def pids(self) -> dict[str, int]:
        """The components' pids, by component name, as kwokctl recorded them."""
        pids: dict[str, int] = {}
        for pid_file in (self.cluster_dir / "pids").glob("*.pid"):
            text = pid_file.read_text().strip()
            if text.isdigit():
                pids[pid_file.stem] = int(text)
        return pids

    def is_healthy(self) -> bool:
        """The API server answers /readyz through the kubeconfig."""
        if not self.kubeconfig.is_file():
            return False
        return self.kubectl("get", "--raw", "/readyz", "--request-timeout=5s", timeout=10).returncode == 0

    def ready_nodes(self) -> int:
        result = self.kubectl("get", "nodes", "-o", "json")
        if result.returncode != 0:
            return 0
        nodes = json.loads(result.stdout)["items"]
        return sum(
            1
            for node in nodes
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in node.get("status", {}).get("conditions", [])
            )
        )

    def create(self) -> None:
        """Create the cluster, wait for its API server and add the nodes."""
        self.kwokctl(*self.create_args())
        deadline = time.monotonic() + self.ready_timeout
        while not self.is_healthy():
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"API server not ready after {self.ready_timeout:.0f}s; "
                    f"see {self.cluster_dir / 'logs' / 'kube-apiserver.log'}"
                )
            time.sleep(1)
        self.kwokctl("scale", "node", "--replicas", str(self.nodes))

    def wait_ready(self) -> None:
        """Wait for a usable cluster: API ready, nodes Ready, controller-manager at work."""
        deadline = time.monotonic() + self.ready_timeout
        waiting_for = "the API server to answer /readyz"
        while time.monotonic() < deadline:
            if not self.is_healthy():
                waiting_for = "the API server to answer /readyz"
            elif (ready := self.ready_nodes()) < self.nodes:
                waiting_for = f"{self.nodes} Ready nodes (have {ready})"
            elif self.kubectl("get", "serviceaccount", "default", "-n", "default").returncode != 0:
                waiting_for = "the controller-manager to create the default ServiceAccount"
            else:
                return
            time.sleep(1)
        raise ClusterError(
            f"cluster not ready after {self.ready_timeout:.0f}s, still waiting for {waiting_for}; "
            f"component logs are in {self.cluster_dir / 'logs'}"
        )

    def delete(self) -> None:
        """Delete the cluster and make sure none of its processes survive."""
        pids = self.pids()
        self.kwokctl("delete", "cluster", "--kubeconfig", str(self.kubeconfig), check=False)
        for component, pid in pids.items():
            if _still_running(component, pid):
                print(f"[cluster] killing leftover {component} of {self.name} (pid {pid})", flush=True)
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.cluster_dir, ignore_errors=True)
        self.kubeconfig.unlink(missing_ok=True)


def _binary(name: str) -> str:
    return str(tools.tool(name).current)


def _still_running(component: str, pid: int) -> bool:
    """The pid is alive and still that component (pids are reused once a process exits)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return component.encode() in cmdline


def _local() -> Kwok:
    """This checkout's test cluster."""
    return Kwok(NAME, testenv_dir() / "kwok", kubeconfig())


def _stamp() -> Path:
    return testenv_dir() / "cluster.json"


def _pins() -> dict[str, str]:
    return {
        "kubernetes": versions.KUBERNETES,
        "etcd": versions.ETCD,
        "kwok": versions.KWOK,
    }


def kubectl(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run our kubectl against this checkout's cluster; never raises on a non-zero exit."""
    return _local().kubectl(*args, timeout=timeout)


def downloads_in(plan: str) -> list[str]:
    """The lines of a kwokctl --dry-run plan that fetch from a URL rather than copy a file."""
    return [line for line in plan.splitlines() if line.startswith("# Download") and _URL.search(line)]


def check_no_downloads() -> None:
    """Fail if kwokctl would fetch anything: these machines have no release downloads."""
    local = _local()
    downloads = downloads_in(local.kwokctl(*local.create_args(), "--dry-run").stdout)
    if downloads:
        raise ClusterError(
            "kwokctl would download instead of using the local binaries:\n" + "\n".join(downloads)
        )


def is_healthy() -> bool:
    """The API server answers /readyz through the kubeconfig."""
    return _local().is_healthy()


def _create() -> None:
    check_no_downloads()
    testenv_dir().mkdir(parents=True, exist_ok=True)
    print(f"[cluster] creating kwok cluster {NAME!r} ({versions.KUBERNETES})", flush=True)
    _local().create()
    _stamp().write_text(json.dumps(_pins(), indent=2) + "\n")


@contextmanager
def _exclusive() -> Iterator[None]:
    """Serialise up/down across processes: parallel test sessions share this checkout's cluster."""
    testenv_dir().mkdir(parents=True, exist_ok=True)
    with (testenv_dir() / "cluster.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def up() -> Path:
    """Build what is missing and make sure a healthy cluster runs; returns its kubeconfig."""
    started = time.monotonic()
    with _exclusive():
        tools.ensure_all()
        _up()
    print(
        f"[cluster] ready in {time.monotonic() - started:.0f}s; export KUBECONFIG={kubeconfig()}",
        flush=True,
    )
    return kubeconfig()


def _up() -> None:
    local = _local()
    if not local.cluster_dir.exists():
        _create()
    elif _stamp_matches() and _all_components_running() and local.is_healthy():
        print(f"[cluster] reusing running cluster {NAME!r}", flush=True)
    else:
        # Recreating takes seconds, while restarting in place would leave pods unmanaged
        # for minutes: a new kwok-controller waits out the dead one's node leases.
        print("[cluster] recreating a stopped or differently pinned cluster", flush=True)
        _down()
        _create()
    local.wait_ready()


def _stamp_matches() -> bool:
    try:
        return bool(json.loads(_stamp().read_text()) == _pins())
    except (OSError, ValueError):
        return False


def _all_components_running() -> bool:
    pids = _local().pids()
    return bool(pids) and all(_still_running(name, pid) for name, pid in pids.items())


def down() -> None:
    """Delete the cluster and make sure none of its processes survive."""
    with _exclusive():
        _down()


def _down() -> None:
    local = _local()
    if not local.cluster_dir.exists():
        print(f"[cluster] no cluster {NAME!r} in {local.workdir}", flush=True)
    else:
        local.delete()
        print(f"[cluster] deleted cluster {NAME!r}", flush=True)
    _stamp().unlink(missing_ok=True)
    kubeconfig().unlink(missing_ok=True)


def status() -> Status:
    if not _local().cluster_dir.exists():
        return Status(False, kubeconfig(), "no cluster; run `make cluster-up`")
    if not is_healthy():
        return Status(False, kubeconfig(), "created but not answering; run `make cluster-up`")
    version = kubectl("version", "-o", "json")
    server = json.loads(version.stdout).get("serverVersion", {}).get("gitVersion", "?")
    nodes = kubectl("get", "nodes", "--no-headers").stdout.strip()
    return Status(True, kubeconfig(), f"Kubernetes {server}\n{nodes}")
