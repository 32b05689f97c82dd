"""The AWS Secrets Manager the benchmark reads from: the counting moto server, seeded with M keys."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import boto3

from bench import moto_counting
from bench.operators import REGION, Body, aws_provider, credentials_secret, free_port
from bench.paths import LOGS, REPO

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

ROTATION_KEY = "bench/rotation"
# What the harness itself asks of moto between a reset and a reading; not the operator's.
HARNESS_OPERATIONS = frozenset({"PutSecretValue", "CreateSecret"})
# AWS Secrets Manager list price: $0.05 per 10,000 API calls.
USD_PER_CALL = 0.05 / 10_000
MONTH_SECONDS = 30 * 24 * 3600.0


def key_name(index: int) -> str:
    return f"bench/key-{index:04d}"


def value(index: int | str, generation: int) -> str:
    return json.dumps({"username": f"user-{index}", "password": f"pw-{index}-{generation}"})


class Moto:
    name = "aws"

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        log = (LOGS / "moto.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.moto_counting", "--port", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        log.close()
        deadline = time.monotonic() + 60
        while True:
            try:
                moto_counting.counts(self.url)
                return
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"moto did not start; see {LOGS / 'moto.log'}") from None
                time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def client(self) -> SecretsManagerClient:
        return boto3.client(
            "secretsmanager",
            region_name=REGION,
            endpoint_url=self.url,
            aws_access_key_id="AKIABENCHMARKKEY0000",
            aws_secret_access_key="bench-secret-access-key",
        )

    def seed(self, keys: int) -> None:
        """Creates bench/key-0000 … and the rotation key (counted requests are reset after)."""
        sm = self.client()

        def create(index: int) -> None:
            sm.create_secret(Name=key_name(index), SecretString=value(index, 1))

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(create, range(keys)))
        sm.create_secret(Name=ROTATION_KEY, SecretString=value("rotation", 1))
        self.reset()

    def rotate(self, key: str, generation: int) -> None:
        self.client().put_secret_value(SecretId=key, SecretString=value(key, generation))

    def rotate_many(self, keys: list[str], generation: int) -> None:
        sm = self.client()

        def put(key: str) -> None:
            sm.put_secret_value(SecretId=key, SecretString=value(key, generation))

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(put, keys))

    def counts(self) -> dict[str, dict[str, int]]:
        return moto_counting.counts(self.url)

    def reset(self) -> None:
        moto_counting.reset(self.url)

    def summary(self) -> dict[str, float]:
        return dict(summarize(self.counts()))

    def cost(self, requests_per_cycle: float, cycle_seconds: float) -> dict[str, float]:
        return {"aws_monthly_usd": monthly_usd(requests_per_cycle, cycle_seconds)}

    def vaultsync_provider(self) -> Body:
        return aws_provider(self.url)

    def credentials(self) -> list[Body]:
        return [credentials_secret()]


def summarize(counts: dict[str, dict[str, int]]) -> dict[str, int]:
    """Server-side read figures: API requests that read values, and keys they asked for."""
    calls = {op: n for op, n in counts.get("calls", {}).items() if op not in HARNESS_OPERATIONS}
    keys = counts.get("keys", {})
    sizes = {op: n for op, n in counts.get("bytes", {}).items() if op not in HARNESS_OPERATIONS}
    reads = {op: calls.get(op, 0) for op in moto_counting.READS}
    return {
        "provider_requests": sum(calls.values()),
        "provider_bytes": sum(sizes.values()),
        "list_secrets_requests": calls.get("ListSecrets", 0),
        "describe_secret_requests": calls.get("DescribeSecret", 0),
        "provider_read_requests": sum(reads.values()),
        "provider_keys_read": sum(keys.values()),
        "provider_distinct_keys_read": counts.get("distinct", {}).get("keys", 0),
        "get_secret_value_requests": calls.get("GetSecretValue", 0),
        "batch_get_secret_value_requests": calls.get("BatchGetSecretValue", 0),
    }


def monthly_usd(requests_per_cycle: float, cycle_seconds: float) -> float:
    """What that many calls every cycle cost in a 30-day month at AWS list prices."""
    return requests_per_cycle * (MONTH_SECONDS / cycle_seconds) * USD_PER_CALL
