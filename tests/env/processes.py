"""Stopping the servers the tests and the demo start, the same way everywhere."""

from __future__ import annotations

import subprocess


def stop(process: subprocess.Popen[bytes] | None, grace_seconds: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if the process is still running after the grace period."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
