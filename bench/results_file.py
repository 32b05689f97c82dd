"""bench/results/latest.json: written after every scenario, so a cut-short run keeps its figures."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

from bench.paths import LATEST

TARGETS: dict[str, dict[str, str]] = {
    "cold_start": {
        "seconds_to_all_ready": "<= 90 at N=10,000",
        "provider_read_requests": "<= M + 1 per store",
        "peak_rss_mib": "<= 150",
    },
    "steady_state": {
        "provider_keys_read_per_cycle": "<= M (never N)",
        "kube_writes_per_cycle": "0",
    },
    "rotation_fanout": {"seconds_first_secret_to_last_replicaset": "<= 5"},
    "operator_restart": {
        "workload_restarts": "0",
        "provider_keys_read": "only keys of ExternalSecrets due in the window",
    },
    "memory": {"rss_mib_at_10000": "<= 150 (cold_start peak)"},
}


def machine() -> dict[str, Any]:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return {
        "cpus": os.cpu_count() or 0,
        "cpu_model": model,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


class Results:
    def __init__(self, path: Path = LATEST) -> None:
        self.path = path
        self.data: dict[str, Any] = {
            "meta": {"machine": machine()},
            "targets": TARGETS,
            "scenarios": {},
            "peers": {},
            "notes": {},
        }

    def scenario(self, name: str, figures: dict[str, float], peer: str | None = None) -> None:
        clean = {k: _number(v) for k, v in figures.items()}
        if peer is None:
            self.data["scenarios"][name] = clean
        else:
            self.data["peers"].setdefault(peer, {"meta": {}, "scenarios": {}})["scenarios"][name] = clean
        self.save()

    def peer_meta(self, peer: str, **meta: Any) -> None:
        self.data["peers"].setdefault(peer, {"meta": {}, "scenarios": {}})["meta"].update(meta)
        self.save()

    def note(self, key: str, text: str) -> None:
        self.data["notes"][key] = text
        self.save()

    def meta(self, **meta: Any) -> None:
        self.data["meta"].update(meta)
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(self.data, indent=2, sort_keys=False) + "\n")
        temporary.replace(self.path)


def _number(value: float) -> float:
    return round(float(value), 3)
