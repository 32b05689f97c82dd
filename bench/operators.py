"""The operators under test, each as: its manifests for the same load, and its process.

vaultsync and External Secrets Operator get equivalent objects: one ClusterSecretStore for
AWS Secrets Manager (the same moto server, the same static credentials in a Secret), and
ExternalSecrets that each copy one JSON property of one remote key into a Secret. Both run as
local processes against the bench cluster's kubeconfig; their memory and CPU are read from
/proc the same way.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from bench.paths import KUBECONFIG, LOGS, REPO
from tests.env.operator import operator_python

Body = dict[str, Any]
BENCH_LABEL = "bench.vaultsync.io/load"
# What a ClusterExternalSecret provisions carries this instead: vaultsync refuses labels in its
# own domain there (a tenant-visible object's labels are the declaration's, not the operator's).
CLUSTER_LOAD_LABEL = "vaultsync-bench/load"
CREDS_NAMESPACE = "bench-system"
CREDS_SECRET = "bench-aws-creds"
STORE_NAME = "bench-aws"
REGION = "us-east-1"
_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def scrape(url: str) -> list[tuple[str, dict[str, str], float]]:
    """Prometheus text exposition → (name, labels, value) samples."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    samples = []
    for line in text.splitlines():
        found = _SAMPLE.match(line)
        if found:
            labels = dict(_LABEL.findall(found.group("labels") or ""))
            samples.append((found.group("name"), labels, float(found.group("value"))))
    return samples


def metric_sum(samples: list[tuple[str, dict[str, str], float]], name: str, **match: str) -> float:
    return sum(
        value
        for sample_name, labels, value in samples
        if sample_name == name and all(labels.get(k) == v for k, v in match.items())
    )


def credentials_secret(
    name: str = CREDS_SECRET, data: dict[str, str] | None = None, namespace: str = CREDS_NAMESPACE
) -> Body:
    """A Secret holding a store's credentials; by default the bench's AWS keys."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "stringData": data or {"id": "AKIABENCHMARKKEY0000", "secret": "bench-secret-access-key"},
    }


def aws_provider(endpoint: str) -> Body:
    """vaultsync's `spec.provider` for the bench's AWS (moto at `endpoint`)."""
    return {
        "aws": {
            "region": REGION,
            "endpoint": endpoint,
            "auth": {
                "secretRef": {
                    "accessKeyId": {"name": CREDS_SECRET, "key": "id", "namespace": CREDS_NAMESPACE},
                    "secretAccessKey": {"name": CREDS_SECRET, "key": "secret", "namespace": CREDS_NAMESPACE},
                }
            },
        }
    }


@dataclass
class Operator(ABC):
    """One operator under test: what it needs in the cluster and how its process runs."""

    moto_url: str
    log_name: str = ""
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    metrics_port: int = field(default=0, init=False)

    name: ClassVar[str]
    group: ClassVar[str]
    version: ClassVar[str]
    plural: ClassVar[str] = "externalsecrets"
    reload_annotation: ClassVar[str] = ""

    @abstractmethod
    def cluster_store(self) -> Body: ...

    @abstractmethod
    def external_secret(self, namespace: str, name: str, key: str, refresh: str, load: str) -> Body: ...

    @abstractmethod
    def command(self) -> list[str]: ...

    def cluster_external_secret(
        self, name: str, selector: dict[str, str], key: str, refresh: str, load: str
    ) -> Body:
        """One ExternalSecret in every namespace `selector` matches: the same fields in ESO and
        vaultsync (`cluster_fanout`, bench/clusterfanout.py)."""
        spec = self.external_secret("", name, key, refresh, load)["spec"]
        return {
            "apiVersion": f"{self.group}/{self.version}",
            "kind": "ClusterExternalSecret",
            "metadata": {"name": name},
            "spec": {
                "externalSecretName": name,
                "externalSecretMetadata": {"labels": {CLUSTER_LOAD_LABEL: load}},
                "namespaceSelectors": [{"matchLabels": dict(selector)}],
                "refreshTime": "1m",
                "externalSecretSpec": spec,
            },
        }

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KUBECONFIG"] = str(KUBECONFIG)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO / "operator"), env.get("PYTHONPATH", "")])
        return env

    def flags(self) -> dict[str, Any]:
        """The settings this run used, recorded with the results."""
        return {"command": " ".join(self.command()[1:])}

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> float:
        """Starts the process; returns the monotonic time it was started."""
        LOGS.mkdir(parents=True, exist_ok=True)
        self.metrics_port = free_port()
        log = (LOGS / f"{self.log_name or self.name}.log").open("ab")
        started = time.monotonic()
        self.process = subprocess.Popen(
            self.command(), env=self.environment(), stdout=log, stderr=subprocess.STDOUT, cwd=REPO
        )
        log.close()
        return started

    def stop(self, timeout: float = 30) -> None:
        if self.process is None or self.process.poll() is not None:
            self.process = None
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def metrics(self) -> list[tuple[str, dict[str, str], float]]:
        return scrape(f"http://127.0.0.1:{self.metrics_port}/metrics")

    def wait_metrics(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited; see {LOGS}")
            try:
                self.metrics()
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.2)
        raise TimeoutError(f"{self.name} metrics endpoint did not answer")

    @abstractmethod
    def objects_seen(self) -> float:
        """How many ExternalSecrets the running operator has taken in (from its own metrics)."""

    def kube_writes(self) -> dict[str, float] | None:
        """Write requests the operator counted itself, if it counts them."""
        return None

    def deployment_annotations(self, secret: str) -> dict[str, str]:
        return {self.reload_annotation: secret} if self.reload_annotation else {}


class Vaultsync(Operator):
    name = "vaultsync"
    group = "vaultsync.io"
    version = "v1alpha1"
    reload_annotation = "vaultsync.io/reload"
    workers: int = 32
    provider: Body | None = None  # the store's `spec.provider`; None: the AWS of `moto_url`

    def cluster_store(self) -> Body:
        return {
            "apiVersion": f"{self.group}/{self.version}",
            "kind": "ClusterSecretStore",
            "metadata": {"name": STORE_NAME},
            "spec": {"provider": self.provider or aws_provider(self.moto_url)},
        }

    def external_secret(self, namespace: str, name: str, key: str, refresh: str, load: str) -> Body:
        return {
            "apiVersion": f"{self.group}/{self.version}",
            "kind": "ExternalSecret",
            "metadata": {"name": name, "namespace": namespace, "labels": {BENCH_LABEL: load}},
            "spec": {
                "storeRef": {"name": STORE_NAME, "kind": "ClusterSecretStore"},
                "refreshInterval": refresh,
                "target": {"name": name},
                "data": [{"secretKey": "password", "remoteRef": {"key": key, "property": "password"}}],
            },
        }

    def command(self) -> list[str]:
        return [
            operator_python(),
            "-m",
            "vaultsync",
            "run",
            "--operator-namespace",
            CREDS_NAMESPACE,
            "--health-address",
            "127.0.0.1",
            "--health-port",
            str(self.health_port),
            "--metrics-port",
            str(self.metrics_port),
            "--workers",
            str(self.workers),
        ]

    health_port: int = 0

    def start(self) -> float:
        self.health_port = free_port()
        return super().start()

    def objects_seen(self) -> float:
        return metric_sum(self.metrics(), "vaultsync_scheduled_external_secrets")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=5) as r:
                return bool(r.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def kube_writes(self) -> dict[str, float] | None:
        out: dict[str, float] = {}
        for name, labels, value in self.metrics():
            if name == "vaultsync_kube_requests_total" and labels.get("verb") in (
                "create",
                "update",
                "patch",
                "delete",
            ):
                out[f"{labels['verb']} {labels.get('resource', '')}"] = value
        return out

    def restarts(self) -> float:
        return metric_sum(self.metrics(), "vaultsync_workload_restarts_total")

    def keys_read(self) -> float:
        return metric_sum(self.metrics(), "vaultsync_provider_calls_total", operation="read")


class ExternalSecretsOperator(Operator):
    name = "external-secrets"
    group = "external-secrets.io"
    version = "v1"
    concurrent: ClassVar[int] = 32
    client_qps: ClassVar[int] = 1000
    binary: Path = Path()

    def cluster_store(self) -> Body:
        return {
            "apiVersion": f"{self.group}/{self.version}",
            "kind": "ClusterSecretStore",
            "metadata": {"name": STORE_NAME},
            "spec": {
                "provider": {
                    "aws": {
                        "service": "SecretsManager",
                        "region": REGION,
                        "auth": {
                            "secretRef": {
                                "accessKeyIDSecretRef": {
                                    "name": CREDS_SECRET,
                                    "key": "id",
                                    "namespace": CREDS_NAMESPACE,
                                },
                                "secretAccessKeySecretRef": {
                                    "name": CREDS_SECRET,
                                    "key": "secret",
                                    "namespace": CREDS_NAMESPACE,
                                },
                            }
                        },
                    }
                }
            },
        }

    def external_secret(self, namespace: str, name: str, key: str, refresh: str, load: str) -> Body:
        return {
            "apiVersion": f"{self.group}/{self.version}",
            "kind": "ExternalSecret",
            "metadata": {"name": name, "namespace": namespace, "labels": {BENCH_LABEL: load}},
            "spec": {
                "secretStoreRef": {"name": STORE_NAME, "kind": "ClusterSecretStore"},
                "refreshInterval": refresh,
                "target": {"name": name, "creationPolicy": "Owner"},
                "data": [{"secretKey": "password", "remoteRef": {"key": key, "property": "password"}}],
            },
        }

    def command(self) -> list[str]:
        return [
            str(self.binary),
            f"--metrics-addr=127.0.0.1:{self.metrics_port}",
            f"--concurrent={self.concurrent}",
            # client-go's default limit (QPS 50, burst 100) caps ESO at ~17 ExternalSecrets/s
            # here (3 writes each); lifted so the peer is measured at its best, not its default.
            f"--client-qps={self.client_qps}",
            f"--client-burst={2 * self.client_qps}",
            "--enable-leader-election=false",
        ]

    def environment(self) -> dict[str, str]:
        env = super().environment()
        # ESO has no per-store endpoint field for AWS; these process-wide overrides are how its
        # own e2e tests reach LocalStack (pkg/provider/aws/auth/resolver.go).
        env["AWS_SECRETSMANAGER_ENDPOINT"] = self.moto_url
        env["AWS_STS_ENDPOINT"] = self.moto_url
        env["AWS_REGION"] = REGION
        return env

    def objects_seen(self) -> float:
        return metric_sum(self.metrics(), "controller_runtime_reconcile_total", controller="externalsecret")

    def kube_writes(self) -> dict[str, float] | None:
        """client-go's own request counter (rest_client_requests_total), by HTTP method."""
        out: dict[str, float] = {}
        for name, labels, value in self.metrics():
            method = labels.get("method", "")
            if name == "rest_client_requests_total" and method in ("POST", "PUT", "PATCH", "DELETE"):
                out[method] = out.get(method, 0.0) + value
        return out
