"""Where the benchmark keeps things: its own cluster and logs in bench/.work, results in bench/results."""

from __future__ import annotations

from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WORK = BENCH / ".work"
RESULTS = BENCH / "results"
LATEST = RESULTS / "latest.json"
LOGS = WORK / "logs"
KUBECONFIG = WORK / "kubeconfig"
PEER_MODULES = BENCH / "peers" / "go"
