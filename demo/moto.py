"""A local AWS Secrets Manager for the demo: moto's server on 127.0.0.1, from the venv.

moto accepts any access key unless told otherwise, so the placeholder keys in
examples/aws-store.yaml work against it unchanged. It is a subprocess the demo owns:
started on a free port, stopped (and its port closed) when the demo ends.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, TYPE_CHECKING

import boto3
from tests.env import processes
from tests.env.operator import free_port

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

REGION = "us-east-1"
START_TIMEOUT_SECONDS = 30.0


class MotoServer:
    """`moto_server -H 127.0.0.1 -p PORT`, its output in `log_path`."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        executable = Path(sys.executable).with_name("moto_server")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self._process = subprocess.Popen(
            [str(executable), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self._process.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1):  # noqa: S310 - http://127.0.0.1
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"moto_server did not answer within {START_TIMEOUT_SECONDS:.0f}s")

    def stop(self) -> None:
        processes.stop(self._process)
        if self._log is not None:
            self._log.close()
            self._log = None

    def client(self, access_key_id: str, secret_access_key: str) -> SecretsManagerClient:
        return boto3.client(
            "secretsmanager",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
        )
