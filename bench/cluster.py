"""The benchmark's own local cluster, separate from the test suite's.

The tests' cluster (`make cluster-up`, `.testenv/`) is shared by whoever runs tests in this
checkout; ten thousand objects there would slow their tests, and their requests would pollute
the API server's request counters that the benchmark reads. So the benchmark makes a second
kwok cluster, named `vaultsync-bench`, with its state and kubeconfig in `bench/.work/`: the
same code as the tests' (tests/env/cluster.py `Kwok`, from the same locally built binaries),
with a busier controller-manager. What is the benchmark's own here is reading the API
server's request counters.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter

from bench.paths import KUBECONFIG, WORK
from tests.env import tools
from tests.env.cluster import ClusterError, Kwok

NAME = "vaultsync-bench"
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

BENCH = Kwok(
    NAME,
    WORK / "kwok",
    KUBECONFIG,
    extra_args=tuple(
        arg
        for key, value in CONTROLLER_MANAGER_ARGS.items()
        for arg in ("--extra-args", f"kube-controller-manager={key}={value}")
    ),
    ready_timeout=READY_TIMEOUT,
)


def kubectl(*args: str, timeout: float = 120, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return BENCH.kubectl(*args, timeout=timeout, stdin=stdin)


def kubectl_ok(*args: str, timeout: float = 120, stdin: str | None = None) -> str:
    result = kubectl(*args, timeout=timeout, stdin=stdin)
    if result.returncode != 0:
        raise ClusterError(f"kubectl {' '.join(args[:4])} failed: {result.stderr.strip()[-2000:]}")
    return result.stdout


def up() -> None:
    """Create the bench cluster, or reuse it if it answers."""
    tools.ensure_all()
    if BENCH.cluster_dir.exists() and BENCH.is_healthy():
        print(f"[bench] reusing cluster {NAME}", flush=True)
    else:
        if BENCH.cluster_dir.exists():
            BENCH.delete()
        WORK.mkdir(parents=True, exist_ok=True)
        print(f"[bench] creating cluster {NAME}", flush=True)
        BENCH.create()
    BENCH.wait_ready()


def down() -> None:
    """Delete the bench cluster and make sure none of its processes survive."""
    if BENCH.cluster_dir.exists():
        BENCH.delete()


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
