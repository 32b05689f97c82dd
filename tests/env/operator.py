"""Run the real operator as a subprocess against a test cluster, and stop it cleanly.

End-to-end tests must exercise `vaultsync run` exactly as a user starts it, so the operator
is a separate process (its own event loop, signals and exit code), not an import. It is
healthy when /healthz answers 200; its output goes to a file the test can read.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO

from prometheus_client.parser import text_string_to_metric_families

from tests.env import processes
from tests.env.paths import REPO

STARTUP_TIMEOUT_SECONDS = 60.0
STOP_GRACE_SECONDS = 10.0
LOG_TAIL_LINES = 60


def operator_python() -> str:
    """The interpreter that runs the operator: `make runtime`'s venv, as in the image.

    It holds only vaultsync's dependencies (not the tests' kubernetes client); outside
    make, the tests' own interpreter.
    """
    return os.environ.get("VAULTSYNC_OPERATOR_PYTHON") or sys.executable


class OperatorFailed(RuntimeError):
    """The operator exited or never became healthy; the message carries its log tail."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OperatorProcess:
    """One `python -m vaultsync run` process, restartable with the same ports and log file."""

    def __init__(
        self,
        *,
        kubeconfig: Path,
        namespace: str,
        log_path: Path,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.namespace = namespace
        self.log_path = log_path
        self.health_port = free_port()
        self.metrics_port = free_port()
        self._args = tuple(args)
        self._env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "VAULTSYNC_OPERATOR_NAMESPACE": namespace,
            # Every line reaches the log file as written: a process SIGKILLed after a slow stop
            # would otherwise take its last (block-buffered) lines, the ones that explain it, along.
            "PYTHONUNBUFFERED": "1",
            # Tests watch refreshes happen within seconds; the 10 s production floor has its
            # own tests, which set it back (tests/e2e/tenancy).
            "VAULTSYNC_MIN_REFRESH_INTERVAL": "1s",
            # The tests' stores are mostly `fake`; a test of the default passes "false".
            "VAULTSYNC_ENABLE_FAKE_PROVIDER": "true",
            # Leader election as in production, but quick: a test that kills the operator and
            # starts it again waits one lease duration, not fifteen seconds.
            "VAULTSYNC_LEADER_ELECT_LEASE_DURATION": "4s",
            "VAULTSYNC_LEADER_ELECT_RENEW_DEADLINE": "3s",
            "VAULTSYNC_LEADER_ELECT_RETRY_PERIOD": "1s",
            "PYTHONPATH": os.pathsep.join([str(REPO / "operator"), os.environ.get("PYTHONPATH", "")]),
            **(env or {}),
        }
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}/healthz"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def metric(self, name: str, **labels: str) -> float:
        """The value of the sample `name` with these labels (0 when absent), as served now."""
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            text = response.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return float(sample.value)
        return 0.0

    @property
    def command(self) -> list[str]:
        return [
            operator_python(),
            "-m",
            "vaultsync",
            "run",
            "--health-port",
            str(self.health_port),
            "--metrics-port",
            str(self.metrics_port),
            *self._args,
        ]

    @property
    def pid(self) -> int:
        """The operator's own process id (it is started directly, not through a shell)."""
        if self._process is None:
            raise OperatorFailed("the operator was never started")
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        """The exit code once stopped or crashed; None while it runs (or before start)."""
        return None if self._process is None else self._process.poll()

    def logs(self) -> str:
        """Everything the operator has written to stdout and stderr so far."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def start(self) -> None:
        """Start the operator and return once /healthz answers 200."""
        if self._process is not None and self._process.poll() is None:
            raise OperatorFailed("the operator is already running")
        self._log = self.log_path.open("ab")
        self._log.write(f"--- {' '.join(self.command)}\n".encode())
        self._log.flush()
        self._process = subprocess.Popen(
            self.command, env=self._env, stdout=self._log, stderr=subprocess.STDOUT
        )
        self._wait_healthy()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it is still running after the grace period."""
        processes.stop(self._process, STOP_GRACE_SECONDS)
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.returncode is not None:
                self.stop()
                raise OperatorFailed(
                    f"the operator exited with {self.returncode} before it was healthy:\n{self._tail()}"
                )
            if self._healthz_ok():
                return
            time.sleep(0.2)
        self.stop()
        raise OperatorFailed(
            f"{self.health_url} did not answer 200 within {STARTUP_TIMEOUT_SECONDS:.0f}s:\n{self._tail()}"
        )

    def _healthz_ok(self) -> bool:
        try:
            with urllib.request.urlopen(self.health_url, timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def _tail(self) -> str:
        return "\n".join(self.logs().splitlines()[-LOG_TAIL_LINES:])


# The run_operator fixture: `with run_operator(namespace, *args, env={...}) as operator:`.
RunOperator = Callable[..., AbstractContextManager[OperatorProcess]]
