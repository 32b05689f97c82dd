"""Deployments, StatefulSets and DaemonSets as the rollout tests build and watch them.

A restart shows in the cluster as a new ReplicaSet (Deployment) or a new
ControllerRevision (StatefulSet, DaemonSet), so the tests count those rather than
trusting the operator's own word. `RolloutWatch` samples a Deployment's status in a
background thread while it rolls, to prove the strategy's bounds held at every moment.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from tests.env.kube import KubeApi
from tests.env.waiting import eventually

RELOAD = "vaultsync.io/reload"
AUTO_RELOAD = "vaultsync.io/auto-reload"
RESTARTED_AT = "vaultsync.io/restarted-at"
SEEN = "vaultsync.io/seen-fingerprints"
ROLLOUT_TIMEOUT = 120.0
IMAGE = "example.invalid/app:1"  # kwok runs pods without pulling images


def container(name: str = "app", **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": IMAGE, **fields}


def env_from_key(secret: str, key: str) -> dict[str, Any]:
    """A container field `env` reading one key of `secret`."""
    return {"env": [{"name": key.upper(), "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}]}


def pod_spec(*containers: Mapping[str, Any], **fields: Any) -> dict[str, Any]:
    return {"containers": [dict(c) for c in containers] or [container()], **fields}


def _template(name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": name}}, "spec": dict(spec)}


def deployment(
    name: str,
    *,
    annotations: Mapping[str, str] | None = None,
    spec: Mapping[str, Any] | None = None,
    replicas: int = 2,
    max_unavailable: int = 1,
    max_surge: int = 1,
    min_ready_seconds: int = 0,
    paused: bool = False,
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "annotations": dict(annotations or {})},
        "spec": {
            "replicas": replicas,
            "paused": paused,
            "minReadySeconds": min_ready_seconds,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": max_unavailable, "maxSurge": max_surge},
            },
            "template": _template(name, spec or pod_spec()),
        },
    }


def stateful_set(
    name: str, *, annotations: Mapping[str, str], spec: Mapping[str, Any], replicas: int = 2
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "annotations": dict(annotations)},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": _template(name, spec),
        },
    }


def daemon_set(name: str, *, annotations: Mapping[str, str], spec: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "annotations": dict(annotations)},
        "spec": {"selector": {"matchLabels": {"app": name}}, "template": _template(name, spec)},
    }


@dataclass
class Workloads:
    """The apps/v1 side of one test namespace."""

    api: KubeApi
    namespace: str

    def create(self, body: Mapping[str, Any]) -> None:
        create = {
            "Deployment": self.api.apps.create_namespaced_deployment,
            "StatefulSet": self.api.apps.create_namespaced_stateful_set,
            "DaemonSet": self.api.apps.create_namespaced_daemon_set,
        }[body["kind"]]
        create(self.namespace, dict(body))

    def get(self, kind: str, name: str) -> dict[str, Any]:
        read = {
            "Deployment": self.api.apps.read_namespaced_deployment,
            "StatefulSet": self.api.apps.read_namespaced_stateful_set,
            "DaemonSet": self.api.apps.read_namespaced_daemon_set,
        }[kind]
        body: dict[str, Any] = self.api.client.sanitize_for_serialization(read(name, self.namespace))
        return body

    def patch(self, kind: str, name: str, patch: Mapping[str, Any]) -> None:
        apply_patch = {
            "Deployment": self.api.apps.patch_namespaced_deployment,
            "StatefulSet": self.api.apps.patch_namespaced_stateful_set,
            "DaemonSet": self.api.apps.patch_namespaced_daemon_set,
        }[kind]
        apply_patch(name, self.namespace, dict(patch))

    def replica_sets(self, name: str) -> list[str]:
        """Names of the Deployment's ReplicaSets, oldest first: one per pod template it ran."""
        found = self.api.apps.list_namespaced_replica_set(self.namespace, label_selector=f"app={name}")
        ordered = sorted(found.items, key=lambda rs: rs.metadata.creation_timestamp)
        return [rs.metadata.name for rs in ordered]

    def revisions(self, name: str) -> list[str]:
        """Names of a StatefulSet's or DaemonSet's ControllerRevisions: one per template."""
        found = self.api.apps.list_namespaced_controller_revision(
            self.namespace, label_selector=f"app={name}"
        )
        return sorted(rev.metadata.name for rev in found.items)

    def templates(self, kind: str, name: str) -> int:
        """How many pod templates the workload has run: ReplicaSets or ControllerRevisions."""
        return len(self.replica_sets(name) if kind == "Deployment" else self.revisions(name))

    def restarted_at(self, kind: str, name: str) -> str | None:
        template = self.get(kind, name)["spec"]["template"]
        return ((template.get("metadata") or {}).get("annotations") or {}).get(RESTARTED_AT)

    def rolled_out(self, kind: str, name: str) -> dict[str, Any]:
        """The workload, once every replica runs the current template and is available."""
        body = self.get(kind, name)
        status = body.get("status") or {}
        seen = f"{kind} {name} generation {body['metadata']['generation']} status {status}"
        assert status.get("observedGeneration") == body["metadata"]["generation"], seen
        if kind == "DaemonSet":
            desired = status.get("desiredNumberScheduled")
            assert desired, seen
            assert status.get("updatedNumberScheduled") == desired, seen
            assert status.get("numberAvailable") == desired, seen
        else:
            replicas = body["spec"]["replicas"]
            assert status.get("replicas") == replicas, seen
            assert status.get("updatedReplicas") == replicas, seen
            assert status.get("availableReplicas") == replicas, seen
            if kind == "StatefulSet":
                assert status.get("currentRevision") == status.get("updateRevision"), seen
        return body

    def wait_rolled_out(self, kind: str, name: str) -> dict[str, Any]:
        return eventually(
            lambda: self.rolled_out(kind, name),
            what=f"{kind} {name} to finish rolling out",
            timeout=ROLLOUT_TIMEOUT,
        )

    def wait_templates(self, kind: str, name: str, count: int, timeout: float = 60.0) -> None:
        def check() -> None:
            found = self.templates(kind, name)
            assert found == count, f"{kind} {name} has {found} pod templates"

        eventually(check, what=f"{kind} {name} to have {count} pod templates", timeout=timeout)

    def events(self, kind: str, name: str, reason: str | None = None) -> list[Any]:
        found = self.api.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.kind={kind},involvedObject.name={name}"
        )
        return [e for e in found.items if reason is None or e.reason == reason]


def stays(check: Callable[[], object], *, seconds: float, interval: float = 0.5) -> None:
    """Assert that `check()` keeps passing for `seconds`: what "nothing happens" looks like."""
    deadline = time.monotonic() + seconds
    while True:
        check()
        if time.monotonic() >= deadline:
            return
        time.sleep(interval)


@dataclass
class RolloutWatch:
    """Samples a Deployment's status while it rolls: the worst moment the strategy allowed.

    Use as a context manager around the rollout; afterwards `max_unavailable` and
    `max_pods` are the worst values seen and `samples_rolling` how many samples fell
    inside the rollout (updated replicas fewer than desired).
    """

    workloads: Workloads
    name: str
    interval: float = 0.05
    max_unavailable: int = 0
    max_pods: int = 0
    samples_rolling: int = 0
    errors: list[BaseException] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> RolloutWatch:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.errors and exc is None:
            raise self.errors[0]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._sample()
            except Exception as exc:
                self.errors.append(exc)
                return
            self._stop.wait(self.interval)

    def _sample(self) -> None:
        body = self.workloads.get("Deployment", self.name)
        replicas = body["spec"]["replicas"]
        status = body.get("status") or {}
        self.max_unavailable = max(self.max_unavailable, replicas - (status.get("availableReplicas") or 0))
        self.max_pods = max(self.max_pods, status.get("replicas") or 0)
        if (status.get("updatedReplicas") or 0) < replicas:
            self.samples_rolling += 1
