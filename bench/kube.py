"""The harness's own view of the cluster: creating load fast and watching readiness cheaply.

Load is created with `kubectl create` of large List documents, several in parallel (one POST
per object, no client-side apply diff). Readiness of ten thousand objects is followed with one
list + watch stream per kind rather than repeated lists, so the harness itself costs the API
server (and the shared CPU) as little as possible.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client, config, watch

from bench import cluster
from bench.paths import KUBECONFIG

Body = dict[str, Any]
CHUNK = 500
PARALLEL = 4


def api_client() -> client.ApiClient:
    api: client.ApiClient = config.new_client_from_config(config_file=str(KUBECONFIG))
    return api


def create_all(objects: Sequence[Body], parallel: int = PARALLEL) -> float:
    """Create every object (kubectl create of List chunks, in parallel); returns seconds taken."""
    started = time.monotonic()
    namespaces = [o for o in objects if o["kind"] == "Namespace"]
    rest = [o for o in objects if o["kind"] != "Namespace"]
    chunks = [list(rest[i : i + CHUNK]) for i in range(0, len(rest), CHUNK)]

    def create(chunk: list[Body]) -> None:
        document = json.dumps({"apiVersion": "v1", "kind": "List", "items": chunk})
        result = cluster.kubectl("create", "-f", "-", "-o", "name", stdin=document, timeout=600)
        if result.returncode != 0 and "AlreadyExists" not in result.stderr:
            raise cluster.ClusterError(f"kubectl create failed: {result.stderr[-2000:]}")

    if namespaces:
        create(namespaces)  # before anything that lives in them
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        list(pool.map(create, chunks))
    return time.monotonic() - started


def apply_all(objects: Iterable[Body]) -> None:
    document = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)})
    cluster.kubectl_ok("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=document, timeout=300)


def delete_namespaces(names: Iterable[str], wait: bool, timeout: float = 900) -> float:
    """Delete namespaces; with `wait`, until they are gone. Returns seconds taken."""
    started = time.monotonic()
    names = list(names)
    if not names:
        return 0.0
    cluster.kubectl("delete", "namespace", "--wait=false", "--ignore-not-found", *names, timeout=300)
    if wait:
        deadline = time.monotonic() + timeout
        remaining = set(names)
        while remaining and time.monotonic() < deadline:
            out = cluster.kubectl("get", "namespaces", "-o", "name").stdout
            present = {line.removeprefix("namespace/") for line in out.split()}
            remaining &= present
            if remaining:
                time.sleep(2)
    return time.monotonic() - started


class ReadyTracker:
    """Follows one custom resource kind cluster-wide and counts the objects whose Ready is True."""

    def __init__(
        self, group: str, version: str, plural: str, label_selector: str, is_ready: Callable[[Body], bool]
    ) -> None:
        self._api = client.CustomObjectsApi(api_client())
        self._args = (group, version, plural)
        self._selector = label_selector
        self._is_ready = is_ready
        self._lock = threading.Lock()
        self._state: dict[tuple[str, str], Body] = {}
        self._ready: set[tuple[str, str]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"tracker-{plural}")
        self._synced = threading.Event()

    def start(self) -> None:
        self._thread.start()
        if not self._synced.wait(120):
            raise TimeoutError("initial list did not finish")

    def stop(self) -> None:
        self._stop.set()

    def counts(self) -> tuple[int, int]:
        """(objects, ready objects)."""
        with self._lock:
            return len(self._state), len(self._ready)

    def statuses(self) -> list[Body]:
        with self._lock:
            return [dict(v) for v in self._state.values()]

    def _record(self, kind: str, obj: Mapping[str, Any]) -> None:
        meta = obj["metadata"]
        key = (meta["namespace"], meta["name"])
        with self._lock:
            if kind == "DELETED":
                self._state.pop(key, None)
                self._ready.discard(key)
                return
            self._state[key] = {
                "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
                **{"status": obj.get("status") or {}},
            }
            if self._is_ready(dict(obj)):
                self._ready.add(key)
            else:
                self._ready.discard(key)

    def _run(self) -> None:
        group, version, plural = self._args
        while not self._stop.is_set():
            try:
                listed = self._api.list_cluster_custom_object(
                    group, version, plural, label_selector=self._selector
                )
                with self._lock:
                    self._state.clear()
                    self._ready.clear()
                for item in listed.get("items", []):
                    self._record("ADDED", item)
                self._synced.set()
                resource_version = listed["metadata"]["resourceVersion"]
                stream = watch.Watch()
                for event in stream.stream(
                    self._api.list_cluster_custom_object,
                    group,
                    version,
                    plural,
                    label_selector=self._selector,
                    resource_version=resource_version,
                    timeout_seconds=240,
                ):
                    if self._stop.is_set():
                        stream.stop()
                        break
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        self._record(event["type"], event["object"])
            except Exception as exc:  # relist on 410 Gone or a dropped stream
                if self._stop.is_set():
                    return
                print(f"[bench] tracker {plural}: relisting after {type(exc).__name__}", flush=True)
                time.sleep(1)

    def wait_ready(self, expected: int, timeout: float, started: float | None = None) -> float | None:
        """Seconds (from `started`, default now) until `expected` objects are Ready; None on timeout."""
        begin = started if started is not None else time.monotonic()
        deadline = time.monotonic() + timeout
        last_report = 0.0
        while time.monotonic() < deadline:
            _, ready = self.counts()
            if ready >= expected:
                return time.monotonic() - begin
            if time.monotonic() - last_report > 15:
                print(f"[bench]   {ready}/{expected} Ready ({time.monotonic() - begin:.0f}s)", flush=True)
                last_report = time.monotonic()
            time.sleep(0.1)
        return None


def condition_ready(body: Mapping[str, Any]) -> bool:
    for condition in (body.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False


def secret_versions(namespace: str, names: Iterable[str], api: client.CoreV1Api) -> dict[str, str]:
    """resourceVersion of each named Secret in `namespace` (missing: absent)."""
    wanted = set(names)
    listed = api.list_namespaced_secret(namespace, _preload_content=False)
    out: dict[str, str] = {}
    for item in json.loads(listed.data)["items"]:
        if item["metadata"]["name"] in wanted:
            out[item["metadata"]["name"]] = item["metadata"]["resourceVersion"]
    return out


def replica_sets_by_owner(namespace: str, api: client.AppsV1Api) -> dict[str, set[str]]:
    """Deployment name → names of its ReplicaSets."""
    listed = api.list_namespaced_replica_set(namespace, _preload_content=False)
    out: dict[str, set[str]] = {}
    for item in json.loads(listed.data)["items"]:
        for owner in item["metadata"].get("ownerReferences") or []:
            if owner.get("kind") == "Deployment":
                out.setdefault(owner["name"], set()).add(item["metadata"]["name"])
    return out


def deployment_generations(namespace: str, api: client.AppsV1Api) -> dict[str, int]:
    """Deployment name → metadata.generation, which moves when its pod template is patched."""
    listed = api.list_namespaced_deployment(namespace, _preload_content=False)
    return {
        item["metadata"]["name"]: int(item["metadata"].get("generation", 0))
        for item in json.loads(listed.data)["items"]
    }


def wait_rollouts_done(namespace: str, api: client.AppsV1Api, timeout: float) -> bool:
    """Every Deployment in `namespace` has finished rolling out (no old replicas left)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = json.loads(api.list_namespaced_deployment(namespace, _preload_content=False).data)
        if all(_rolled_out(d) for d in listed["items"]):
            return True
        time.sleep(1)
    return False


def _rolled_out(deployment: Mapping[str, Any]) -> bool:
    want = deployment["spec"].get("replicas", 1)
    status = deployment.get("status") or {}
    return bool(
        status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 0)
        and status.get("updatedReplicas", 0) == want
        and status.get("replicas", 0) == want
        and status.get("availableReplicas", 0) == want
    )
