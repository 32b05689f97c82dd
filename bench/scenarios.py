"""The scenarios, run the same way for vaultsync and for each peer.

Order per operator: memory at 0 and at a small N (own namespaces, deleted after), then the
main load: cold_start → steady_state → rotation_fanout → operator_restart. The main load is
N ExternalSecrets in `namespaces` namespaces over M remote keys: ExternalSecret i lives in
namespace i mod namespaces and reads key i mod M, so each key is shared by N/M ExternalSecrets.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubernetes import client

from bench import aws, cluster, kube, procstat
from bench.operators import BENCH_LABEL, Operator
from bench.remote import Remote
from bench.results_file import Results

WATCHED_RESOURCES = frozenset({"secrets", "externalsecrets", "events", "deployments"})
ROTATION_NAMESPACE_SUFFIX = "rot"
ROTATION_PERCENTS = (1, 10, 100)  # steady_rotation: share of the M keys changed per cycle


@dataclass(frozen=True)
class Params:
    n: int
    m: int
    namespaces: int
    refresh: str = "60s"
    refresh_seconds: float = 60.0
    steady_cycles: int = 3
    rotation_count: int = 50
    rotation_refresh: str = "10s"
    restart_window: float = 20.0
    rotation_timeout: float = 120.0
    ready_timeout: float = 600.0
    settle: float = 10.0
    memory_points: tuple[int, ...] = (0, 1000)
    config_objects: int = 10_000  # config_watch (bench/configwatch.py)
    config_referenced: int = 100


class Suite:
    """One operator through every scenario; figures go to `results` as they are measured."""

    def __init__(self, op: Operator, prefix: str, params: Params, remote: Remote, results: Results) -> None:
        self.op = op
        self.prefix = prefix
        self.p = params
        self.remote = remote
        self.results = results
        self.peer = None if op.name == "vaultsync" else op.name
        self.main_namespaces = [f"{prefix}-{i:03d}" for i in range(params.namespaces)]
        self.rotation_namespace = f"{prefix}-{ROTATION_NAMESPACE_SUFFIX}"
        self.memory: dict[str, float] = {}
        self.tracker: kube.ReadyTracker | None = None
        self.steady_keys_per_second: float | None = None

    # helpers ----------------------------------------------------------------------------------

    def record(self, scenario: str, figures: dict[str, float]) -> None:
        one, five, _ = procstat.load_average()
        figures = {**figures, "load_average_1m_end": one, "load_average_5m_end": five}
        self.results.scenario(scenario, figures, peer=self.peer)
        shown = ", ".join(f"{k}={v:g}" for k, v in figures.items())
        print(f"[bench] {self.op.name} {scenario}: {shown}", flush=True)

    def note(self, scenario: str, text: str) -> None:
        self.results.note(f"{self.op.name}.{scenario}", text)
        print(f"[bench] note {self.op.name}.{scenario}: {text}", flush=True)

    def _namespace(self, name: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}

    def load(self, count: int, namespaces: list[str], label: str) -> list[dict[str, Any]]:
        objects = [self._namespace(ns) for ns in namespaces]
        for i in range(count):
            ns = namespaces[i % len(namespaces)]
            objects.append(
                self.op.external_secret(ns, f"es-{i:05d}", aws.key_name(i % self.p.m), self.p.refresh, label)
            )
        return objects

    def new_tracker(self, selector: str) -> kube.ReadyTracker:
        tracker = kube.ReadyTracker(
            self.op.group, self.op.version, self.op.plural, selector, kube.condition_ready
        )
        tracker.start()
        return tracker

    def settle_sample(self) -> procstat.Sample:
        time.sleep(self.p.settle)
        return procstat.sample(self.op.pid)

    # scenarios --------------------------------------------------------------------------------

    def memory_point(self, count: int) -> None:
        """RSS with `count` ExternalSecrets synced, in namespaces of their own (deleted after)."""
        label = f"mem{count}"
        namespaces = [f"{self.prefix}m{count}-{i:03d}" for i in range(max(1, count // 100))] if count else []
        tracker = self.new_tracker(f"{BENCH_LABEL}={label}")
        try:
            if count:
                kube.create_all(self.load(count, namespaces, label))
            started = self.op.start()
            self.op.wait_metrics()
            if count and tracker.wait_ready(count, self.p.ready_timeout, started) is None:
                self.note(f"memory_{count}", f"not all {count} Ready within {self.p.ready_timeout:.0f}s")
            sample = self.settle_sample()
            self.memory[f"rss_mib_at_{count}"] = sample.rss_mib
            self.memory[f"peak_rss_mib_at_{count}"] = sample.peak_rss_mib
            print(f"[bench] {self.op.name} memory at {count}: {sample}", flush=True)
        finally:
            self.op.stop()
            tracker.stop()
            if namespaces:
                kube.delete_namespaces(namespaces, wait=True)

    def cold_start(self) -> None:
        p = self.p
        self.tracker = self.new_tracker(f"{BENCH_LABEL} in (main,rotation)")
        creation = kube.create_all(self.load(p.n, self.main_namespaces, "main"))
        deadline = time.monotonic() + 120
        while self.tracker.counts()[0] < p.n and time.monotonic() < deadline:
            time.sleep(0.5)
        before = cluster.request_counts()
        self.remote.reset()
        started = self.op.start()
        seconds = self.tracker.wait_ready(p.n, p.ready_timeout, started)
        sample = procstat.sample(self.op.pid)
        after = cluster.request_counts()
        server = self.remote.summary()
        writes = cluster.writes_between(before, after, WATCHED_RESOURCES)
        figures: dict[str, float] = {
            "n": p.n,
            "m": p.m,
            "namespaces": p.namespaces,
            "stores": 1,
            "refresh_interval_seconds": p.refresh_seconds,
            "creation_seconds": creation,
            "ready": self.tracker.counts()[1],
            **server,
            "kube_write_requests": sum(writes.values()),
            "kube_write_requests_excluding_events": sum(v for k, v in writes.items() if "events" not in k),
            "peak_rss_mib": sample.peak_rss_mib,
            "rss_mib_at_ready": sample.rss_mib,
            "cpu_seconds": sample.cpu_seconds,
        }
        if seconds is not None:
            figures["seconds_to_all_ready"] = seconds
        else:
            self.note("cold_start", f"not all Ready within {p.ready_timeout:.0f}s; see 'ready'")
        own = self.op.kube_writes()
        if own is not None:
            figures["operator_counted_kube_writes"] = sum(own.values())
        self.note("cold_start.kube_writes_by_verb", ", ".join(f"{k}: {v}" for k, v in sorted(writes.items())))
        self.record("cold_start", figures)

    def steady_state(self) -> None:
        p = self.p
        window = p.steady_cycles * p.refresh_seconds
        # Start half an interval after cold_start: a window that opens exactly when the first
        # syncs happened would close just before the last of its refresh waves.
        time.sleep(p.refresh_seconds / 2)
        before = cluster.request_counts()
        own_before = self.op.kube_writes()
        self.remote.reset()
        cpu_before = procstat.cpu_seconds(self.op.pid)
        procstat.reset_peak(self.op.pid)
        time.sleep(window)
        after = cluster.request_counts()
        server = self.remote.summary()
        sample = procstat.sample(self.op.pid)
        writes = cluster.writes_between(before, after, WATCHED_RESOURCES)
        reads = cluster.writes_between(before, after, WATCHED_RESOURCES, cluster.READ_VERBS)
        cycles = float(p.steady_cycles)
        figures: dict[str, float] = {
            "window_seconds": window,
            "cycles": cycles,
            "refresh_interval_seconds": p.refresh_seconds,
            **{f"{name}_per_cycle": count / cycles for name, count in server.items()},
            **self.remote.cost(server["provider_requests"] / cycles, p.refresh_seconds),
            "kube_writes_per_cycle": sum(writes.values()) / cycles,
            "kube_reads_per_cycle": sum(reads.values()) / cycles,
            "cpu_seconds_per_cycle": (sample.cpu_seconds - cpu_before) / cycles,
            "rss_mib": sample.rss_mib,
            "peak_rss_mib": sample.peak_rss_mib,
            "ready": self.tracker.counts()[1] if self.tracker else 0,
        }
        own_after = self.op.kube_writes()
        if own_before is not None and own_after is not None:
            figures["operator_counted_kube_writes_per_cycle"] = (
                sum(own_after.values()) - sum(own_before.values())
            ) / cycles
        self.memory[f"rss_mib_at_{p.n}"] = sample.rss_mib
        self.steady_keys_per_second = server["provider_keys_read"] / window
        self.note(
            "steady_state.kube_writes_by_verb", ", ".join(f"{k}: {v}" for k, v in sorted(writes.items()))
        )
        self.note("steady_state.kube_reads_by_verb", ", ".join(f"{k}: {v}" for k, v in sorted(reads.items())))
        self.record("steady_state", figures)

    def steady_rotation(self) -> None:
        """Provider cost of one refresh cycle in which 1 %, 10 % and 100 % of the M keys
        changed at its start: it should follow the changes, not the keys."""
        p = self.p
        figures: dict[str, float] = {"refresh_interval_seconds": p.refresh_seconds}
        for percent in ROTATION_PERCENTS:
            changed = [aws.key_name(i) for i in range(max(1, p.m * percent // 100))]
            self.remote.rotate_many(changed, int(time.time()))
            self.remote.reset()
            time.sleep(p.refresh_seconds * 1.1)  # one whole cycle, jitter included
            server = self.remote.summary()
            figures[f"keys_changed_{percent}pct"] = len(changed)
            figures[f"provider_requests_{percent}pct"] = server["provider_requests"]
            figures[f"provider_keys_read_{percent}pct"] = server["provider_keys_read"]
            if "provider_bytes" in server:
                figures[f"provider_bytes_{percent}pct"] = server["provider_bytes"]
        self.record("steady_rotation", figures)

    def rotation_fanout(self) -> None:
        p = self.p
        ns = self.rotation_namespace
        names = [f"rot-{j:02d}" for j in range(p.rotation_count)]
        objects: list[dict[str, Any]] = [self._namespace(ns)]
        for name in names:
            objects.append(
                self.op.external_secret(ns, name, aws.ROTATION_KEY, p.rotation_refresh, "rotation")
            )
            objects.append(_deployment(ns, f"app-{name}", name, self.op.deployment_annotations(name)))
        kube.create_all(objects, parallel=1)
        api = kube.api_client()
        core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
        assert self.tracker is not None
        if self.tracker.wait_ready(p.n + p.rotation_count, p.ready_timeout) is None:
            self.note("rotation_fanout", "rotation ExternalSecrets not all Ready before the rotation")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            sets = kube.replica_sets_by_owner(ns, apps)
            if len(sets) == p.rotation_count and all(len(s) == 1 for s in sets.values()):
                break
            time.sleep(0.5)
        time.sleep(3)  # anything the first sync set in motion has landed
        versions = kube.secret_versions(ns, names, core)
        initial_sets = kube.replica_sets_by_owner(ns, apps)
        initial_generations = kube.deployment_generations(ns, apps)
        restarts_before = _restarts(self.op)
        self.remote.reset()
        rotated_at = time.monotonic()
        # A new value for every suite: the previous suite of this run already rotated the key once.
        self.remote.rotate(aws.ROTATION_KEY, int(time.time()))
        secret_times: dict[str, float] = {}
        rs_times: dict[str, float] = {}
        patch_times: dict[str, float] = {}  # the restarter's share: the pod template patched
        timeout = p.rotation_timeout
        reloads = bool(self.op.reload_annotation)
        while time.monotonic() - rotated_at < timeout:
            now = time.monotonic() - rotated_at
            for name, version in kube.secret_versions(ns, names, core).items():
                if name not in secret_times and version != versions.get(name):
                    secret_times[name] = now
            for owner, owned in kube.replica_sets_by_owner(ns, apps).items():
                if owner not in rs_times and owned - initial_sets.get(owner, set()):
                    rs_times[owner] = now
            if reloads:
                for name, generation in kube.deployment_generations(ns, apps).items():
                    if name not in patch_times and generation != initial_generations.get(name):
                        patch_times[name] = now
            if len(secret_times) == len(names) and (len(rs_times) == len(names) or not reloads):
                break
            time.sleep(0.2)
        if reloads:
            kube.wait_rollouts_done(ns, apps, timeout=120)
        else:
            time.sleep(2)
        final_sets = kube.replica_sets_by_owner(ns, apps)
        new_sets = sum(len(s - initial_sets.get(o, set())) for o, s in final_sets.items())
        server = self.remote.summary()
        figures: dict[str, float] = {
            "external_secrets": p.rotation_count,
            "deployments": p.rotation_count,
            "refresh_interval_seconds": float(p.rotation_refresh.rstrip("s")),
            "secrets_updated": len(secret_times),
            "deployments_with_new_replicaset": len(rs_times),
            "new_replicasets_total": new_sets,
            "provider_keys_read": server["provider_keys_read"],
        }
        if secret_times:
            figures["seconds_put_to_first_secret"] = min(secret_times.values())
        if len(secret_times) == len(names):
            figures["seconds_put_to_all_secrets"] = max(secret_times.values())
        if secret_times and len(patch_times) == len(names):
            # Up to here the restarter; from here to the ReplicaSets, kube-controller-manager.
            figures["seconds_first_secret_to_last_template_patch"] = max(patch_times.values()) - min(
                secret_times.values()
            )
        if len(rs_times) == len(names):
            figures["seconds_put_to_last_replicaset"] = max(rs_times.values())
            figures["seconds_first_secret_to_last_replicaset"] = max(rs_times.values()) - min(
                secret_times.values()
            )
        restarts_after = _restarts(self.op)
        if restarts_before is not None and restarts_after is not None:
            figures["operator_counted_restarts"] = restarts_after - restarts_before
        if not reloads:
            self.note(
                "rotation_fanout",
                "no workload restarter ran with this operator (see peers.reloader); "
                "only the Secret updates are measured",
            )
        self.record("rotation_fanout", figures)

    def operator_restart(self) -> None:
        p = self.p
        assert self.tracker is not None
        total = p.n + p.rotation_count
        api = kube.api_client()
        apps = client.AppsV1Api(api)
        statuses = self.tracker.statuses()
        own_before = self.op.kube_writes()
        initial_sets = kube.replica_sets_by_owner(self.rotation_namespace, apps)
        self.op.stop()
        stopped_wall = time.time()
        own_total_before = sum(own_before.values()) if own_before is not None else None
        before = cluster.request_counts()
        self.remote.reset()
        started = self.op.start()
        self.op.wait_metrics()
        seconds: float | None = None
        deadline = time.monotonic() + p.ready_timeout
        while time.monotonic() < deadline:
            try:
                seen = self.op.objects_seen()
            except OSError:
                seen = 0
            if seen >= total and self.tracker.counts()[1] >= total:
                seconds = time.monotonic() - started
                break
            time.sleep(0.2)
        ready_wall = time.time()
        time.sleep(p.restart_window)
        end_wall = time.time()
        after = cluster.request_counts()
        server = self.remote.summary()
        writes = cluster.writes_between(before, after, WATCHED_RESOURCES)
        final_sets = kube.replica_sets_by_owner(self.rotation_namespace, apps)
        new_sets = sum(len(s - initial_sets.get(o, set())) for o, s in final_sets.items())
        due, due_keys = _due(statuses, stopped_wall, end_wall, self.p, self.op.name)
        sample = procstat.sample(self.op.pid)
        figures: dict[str, float] = {
            "external_secrets": total,
            "observed_window_seconds": end_wall - stopped_wall,
            "provider_keys_read": server["provider_keys_read"],
            "provider_read_requests": server["provider_read_requests"],
            "due_external_secrets_in_window": due,
            "due_distinct_keys_in_window": due_keys,
            "workload_restarts": new_sets,
            "kube_write_requests": sum(writes.values()),
            "peak_rss_mib": sample.peak_rss_mib,
            "cpu_seconds": sample.cpu_seconds,
            "ready_after_restart": self.tracker.counts()[1],
        }
        own_after = self.op.kube_writes()
        if own_total_before is not None and own_after is not None:
            figures["operator_counted_kube_writes"] = sum(own_after.values())  # a new process: from 0
        restarts = _restarts(self.op)
        if restarts is not None:
            figures["operator_counted_restarts"] = restarts
        if self.steady_keys_per_second is not None:
            # What the same window would have read with no restart (main load only).
            figures["steady_state_keys_read_in_same_window"] = self.steady_keys_per_second * (
                end_wall - stopped_wall
            )
        if seconds is not None:
            figures["seconds_to_all_ready"] = seconds
            figures["seconds_ready_to_window_end"] = end_wall - ready_wall
        else:
            self.note("operator_restart", f"not all {total} taken in and Ready within {p.ready_timeout:.0f}s")
        self.note(
            "operator_restart.kube_writes_by_verb", ", ".join(f"{k}: {v}" for k, v in sorted(writes.items()))
        )
        self.record("operator_restart", figures)

    def finish_memory(self) -> None:
        self.record("memory", dict(self.memory))

    def cleanup(self) -> None:
        self.op.stop()
        if self.tracker is not None:
            self.tracker.stop()
        seconds = kube.delete_namespaces([*self.main_namespaces, self.rotation_namespace], wait=True)
        print(f"[bench] {self.op.name}: namespaces deleted in {seconds:.0f}s", flush=True)


def _restarts(op: Operator) -> float | None:
    counter: Callable[[], float] | None = getattr(op, "restarts", None)
    if counter is None:
        return None
    try:
        return counter()
    except OSError:
        return None


def _parse_time(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _due(statuses: list[dict[str, Any]], start: float, end: float, p: Params, name: str) -> tuple[int, int]:
    """ExternalSecrets whose refresh fell due in [start, end], and their distinct remote keys.

    Due times come from each object's own status: the last sync time plus whole refresh
    intervals (vaultsync keeps the refresh grid of `syncedAt`; ESO requeues `refreshTime` +
    interval). The 10% jitter of vaultsync makes this an estimate.
    """
    due = 0
    keys: Counter[str] = Counter()
    for body in statuses:
        status = body.get("status") or {}
        base = _parse_time(status.get("syncedAt") if name == "vaultsync" else status.get("refreshTime"))
        namespace = body["metadata"]["namespace"]
        interval = float(p.rotation_refresh.rstrip("s")) if namespace.endswith("-rot") else p.refresh_seconds
        if base is None:
            continue
        periods = max(0, int((start - base) // interval) + 1)
        if base + periods * interval <= end:
            due += 1
            obj_name = body["metadata"]["name"]
            index = int(obj_name.split("-")[1]) if obj_name.startswith("es-") else -1
            keys[aws.key_name(index % p.m) if index >= 0 else aws.ROTATION_KEY] += 1
    return due, len(keys)


def _deployment(namespace: str, name: str, secret: str, annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "registry.invalid/app:1",
                            "envFrom": [{"secretRef": {"name": secret}}],
                        }
                    ]
                },
            },
        },
    }
