"""`make demo` tells its whole story and exits 0, leaving nothing of its own running.

The demo is run exactly as the Makefile runs it (`python -m demo` from the repository
root), against the test cluster, so it uses "the current kubeconfig" path; the kind and
local-control-plane paths differ only in how the cluster is found.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time

import pytest

from tests.env import paths
from tests.env.kube import Cluster

pytestmark = pytest.mark.e2e

DEMO_TIMEOUT_SECONDS = 300

STORY = [
    "1/7 a cluster",
    "2/7 a local AWS Secrets Manager (moto)",
    "3/7 the CRDs and a namespace",
    "4/7 the operator",
    "5/7 examples/: a store, an ExternalSecret, an annotated Deployment",
    "SecretStore aws is Ready",
    "ExternalSecret shop-db: Ready=True Synced",
    "6/7 rotate: a new password in AWS Secrets Manager",
    "Secret shop-db updated",
    "Deployment shop-api restarted",
    "7/7 the rollout",
    "rolling update complete",
    "Event on Deployment shop-api: Restarted: restarted: Secret shop-db changed",
    "Event on ExternalSecret shop-db: WorkloadRestarted: restarted Deployment shop-api",
    "done: the new value reached the pods",
    "The cluster is left running",
]


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_the_demo_syncs_rotates_and_rolls_out_then_stops_what_it_started(
    cluster: Cluster, install_crds: list[str]
) -> None:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "demo", "--kubeconfig", str(cluster.kubeconfig)],
        cwd=paths.REPO,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_SECONDS,
        check=False,
    )
    output = result.stdout + result.stderr
    print(f"demo took {time.monotonic() - started:.1f}s\n{output}")
    assert result.returncode == 0, output

    lines = result.stdout.splitlines()
    position = 0
    for expected in STORY:
        found = next((i for i in range(position, len(lines)) if expected in lines[i]), None)
        assert found is not None, f"{expected!r} missing or out of order in:\n{result.stdout}"
        position = found + 1
    assert all(re.match(r"^\[ *\d+\.\ds\] ", line) for line in lines if line.startswith("[")), output

    assert "postgresql://" not in output, "a rendered value was printed"
    assert "•••••• (" in output, "the Secret was not shown masked"
    created = _found(r"secret shop/database version (\S+)", output)
    rotated = _found(r"new version (\S+)", output)
    assert created != rotated
    assert re.findall(r"read shop/database version (\S+)", output) == [created, rotated], (
        "the ExternalSecret did not report reading first the created, then the rotated version"
    )

    assert not _port_open(int(_found(r"moto listens on http://127\.0\.0\.1:(\d+)", output))), "moto runs"
    health = int(_found(r"healthy at http://127\.0\.0\.1:(\d+)/", output))
    assert not _port_open(health), "the operator is still running"


def _found(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    assert match is not None, f"no line matches {pattern!r}"
    return match.group(1)
