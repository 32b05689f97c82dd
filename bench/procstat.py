"""Memory and CPU of one process, read from /proc (Linux), the same way for every operator."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024


@dataclass(frozen=True)
class Sample:
    rss_mib: float
    peak_rss_mib: float
    cpu_seconds: float


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / _TICKS


def sample(pid: int) -> Sample:
    return Sample(
        rss_mib=_status_kib(pid, "VmRSS") * 1024 / MIB,
        peak_rss_mib=_status_kib(pid, "VmHWM") * 1024 / MIB,
        cpu_seconds=cpu_seconds(pid),
    )


def reset_peak(pid: int) -> None:
    """Start a new peak-RSS measurement (VmHWM) for the process; Linux >= 4.0."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def load_average() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return round(one, 2), round(five, 2), round(fifteen, 2)
