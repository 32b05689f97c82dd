"""The benchmark's own local cluster, separate from the test suite's.

The tests' cluster (`make cluster-up`, `.testenv/`) is shared by whoever runs tests in this
checkout; ten thousand objects there would slow their tests, and their requests would pollute
the API server's request counters that the benchmark reads. So the benchmark makes a second
kwok cluster from the same locally built binaries (tests/env/tools.py), named
`vaultsync-bench`, with its state and kubeconfig in `bench/.work/`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from bench.paths import KUBECONFIG, WORK
from tests.env import tools
from tests.env.cluster import KWOKCTL_CONFIG
from tests.env.paths import current_bin_dir
from tests.env.versions import ETCD, KUBERNETES

NAME = "vaultsync-bench"
NODES = 2
# kube-controller-manager limits its own API requests to 20/s by default; 50 rolled
# Deployments then wait ~8 s for it to create their ReplicaSets, whoever patched them.
# Managed clusters raise it; the bench raises it so rotation_fanout measures the operators
# (the same cluster serves the peers). Recorded in the results' meta.
CONTROLLER_MANAGER_ARGS = {"kube-api-qps": "100", "kube-api-burst": "200"}
READY_TIMEOUT = 240.0
WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY", "CREATE", "UPDATE"})
READ_VERBS = frozenset({"GET", "LIST"})
_METRIC_LINE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


class ClusterError(RuntimeError):
    pass


def _workdir() -> Path:
    return WORK / "kwok"


def _cluster_dir() -> Path:
    return _workdir() / "clusters" / NAME


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{current_bin_dir()}{os.pathsep}{env.get('PATH', '')}"
    env["KWOK_WORKDIR"] = str(_workdir())
    env["KWOK_KUBE_VERSION"] = KUBERNETES
    env["KWOK_ETCD_VERSION"] = ETCD.lstrip("v")
    return env


def _binary(name: str) -> str:
    return str(tools.tool(name).current)


def _kwokctl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = [_binary("kwokctl"), "--name", NAME, "--config", str(KWOKCTL_CONFIG), *args]
    result = subprocess.run(command, env=_env(), capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise ClusterError(f"kwokctl {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result


def kubectl(*args: str, timeout: float = 120, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [_binary("kubectl"), "--kubeconfig", str(KUBECONFIG), *args]
    try:
        return subprocess.run(
            command, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(command, 124, "", f"timed out: {exc}")


def kubectl_ok(*args: str, timeout: float = 120, stdin: str | None = None) -> str:
    result = kubectl(*args, timeout=timeout, stdin=stdin)
    if result.returncode != 0:
        raise ClusterError(f"kubectl {' '.join(args[:4])} failed: {result.stderr.strip()[-2000:]}")
    return result.stdout


def healthy() -> bool:
    if not KUBECONFIG.is_file():
        return False
    return kubectl("get", "--raw", "/readyz", "--request-timeout=5s", timeout=10).returncode == 0


def _ready_nodes() -> int:
    result = kubectl("get", "nodes", "-o", "json")
    if result.returncode != 0:
        return 0
    return sum(
        1
        for node in json.loads(result.stdout)["items"]
        if any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in node.get("status", {}).get("conditions", [])
        )
    )


def up() -> None:
    """Create the bench cluster, or reuse it if it answers."""
    tools.ensure_all()
    if _cluster_dir().exists() and healthy():
        print(f"[bench] reusing cluster {NAME}", flush=True)
    else:
        if _cluster_dir().exists():
            down()
        WORK.mkdir(parents=True, exist_ok=True)
        print(f"[bench] creating cluster {NAME} ({KUBERNETES})", flush=True)
        _kwokctl(
            "create",
            "cluster",
            "--runtime",
            "binary",
            "--kubeconfig",
            str(KUBECONFIG),
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
            *(
                arg
                for key, value in CONTROLLER_MANAGER_ARGS.items()
                for arg in ("--extra-args", f"kube-controller-manager={key}={value}")
            ),
        )
        deadline = time.monotonic() + READY_TIMEOUT
        while not healthy():
            if time.monotonic() > deadline:
                raise ClusterError(f"bench API server not ready; see {_cluster_dir() / 'logs'}")
            time.sleep(1)
        _kwokctl("scale", "node", "--replicas", str(NODES))
    deadline = time.monotonic() + READY_TIMEOUT
    while _ready_nodes() < NODES or kubectl("get", "sa", "default", "-n", "default").returncode != 0:
        if time.monotonic() > deadline:
            raise ClusterError("bench cluster nodes not Ready")
        time.sleep(1)


def down() -> None:
    """Delete the bench cluster and make sure none of its processes survive."""
    if not _cluster_dir().exists():
        return
    pids: dict[str, int] = {}
    for pid_file in (_cluster_dir() / "pids").glob("*.pid"):
        text = pid_file.read_text().strip()
        if text.isdigit():
            pids[pid_file.stem] = int(text)
    _kwokctl("delete", "cluster", "--kubeconfig", str(KUBECONFIG), check=False)
    for component, pid in pids.items():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if component.encode() in cmdline and NAME.encode() in cmdline:
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(_cluster_dir(), ignore_errors=True)
    KUBECONFIG.unlink(missing_ok=True)


def component_pids() -> dict[str, int]:
    pids: dict[str, int] = {}
    for pid_file in (_cluster_dir() / "pids").glob("*.pid"):
        text = pid_file.read_text().strip()
        if text.isdigit():
            pids[pid_file.stem] = int(text)
    return pids


def request_counts() -> Counter[tuple[str, str, str, str]]:
    """The API server's own request counters: (verb, group, resource, subresource) -> count."""
    text = kubectl_ok("get", "--raw", "/metrics", timeout=60)
    counts: Counter[tuple[str, str, str, str]] = Counter()
    for line in text.splitlines():
        found = _METRIC_LINE.match(line)
        if not found:
            continue
        labels = dict(_LABEL.findall(found.group("labels")))
        key = (
            labels.get("verb", ""),
            labels.get("group", ""),
            labels.get("resource", ""),
            labels.get("subresource", ""),
        )
        counts[key] += int(float(found.group("value")))
    return counts


def writes_between(
    before: Counter[tuple[str, str, str, str]],
    after: Counter[tuple[str, str, str, str]],
    resources: frozenset[str],
    verbs: frozenset[str] = WRITE_VERBS,
) -> dict[str, int]:
    """Requests (writes by default) on `resources` between two snapshots, by `verb resource[/sub]`."""
    out: dict[str, int] = {}
    for key, value in after.items():
        verb, _, resource, sub = key
        if verb not in verbs or resource not in resources:
            continue
        delta = value - before.get(key, 0)
        if delta:
            name = f"{verb} {resource}{'/' + sub if sub else ''}"
            out[name] = out.get(name, 0) + delta
    return out
