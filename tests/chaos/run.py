"""One chaos run: the servers, the replicas, the churn, the faults, and what was measured.

The run owns everything it starts (moto, OpenBao, Toxiproxy, the fault layers, two operator
replicas, each behind its own watch-gap proxy) and stops it in `close()`. Faults run one
episode at a time; after each, churn pauses and the run measures how long until every
Secret holds its key's latest value and every restart is done (the convergence time),
failing the episode past the form's bound. Churn (rotations at the providers) runs
between and during faults.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from tests.chaos import audit
from tests.chaos.cluster import ChaosCluster
from tests.chaos.faultlayer import FaultLayer
from tests.chaos.forms import Form
from tests.chaos.invariants import Watcher, entry_converged, restart_counts, unconverged
from tests.chaos.toxiproxy import Toxiproxy
from tests.chaos.world import World, service_account_kubeconfig
from tests.e2e.conftest import Vaultsync
from tests.env import kube, paths
from tests.env.gapproxy import GapProxy
from tests.env.kube import Cluster, KubeApi
from tests.env.operator import OperatorProcess
from tests.providers.backends import aws as aws_backend
from tests.providers.backends import vault as vault_backend
from tests.providers.test_operator_e2e import credential_secrets

OPERATOR_NAMESPACE = "vaultsync-system"
NAMESPACE = "chaos"
LEASE = "vaultsync"
REPLICAS = ("replica-a", "replica-b")
TICK_SECONDS = 0.25


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


@dataclass
class Replica:
    name: str
    process: OperatorProcess
    gap: GapProxy
    kills: int = 0
    exits: int = 0  # exited on its own (a lost Lease exits 1) and restarted, as a kubelet would
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Results:
    form: str
    faults: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    failover_seconds: list[float] = field(default_factory=list)
    convergence_seconds: dict[str, list[float]] = field(default_factory=dict)

    def converged_after(self, kind: str, seconds: float) -> None:
        self.convergence_seconds.setdefault(kind, []).append(round(seconds, 2))


class Chaos:
    def __init__(self, cluster: ChaosCluster, form: Form, workdir: Path) -> None:
        self.cluster = cluster
        self.form = form
        self.workdir = workdir
        self.results = Results(form.name)
        self.rng = random.Random(int(os.environ.get("VAULTSYNC_CHAOS_SEED", "20261130")))
        self._stack = ExitStack()
        self.replicas: list[Replica] = []
        self._churning = threading.Event()
        self._churn_lock = threading.Lock()
        self._stop = threading.Event()
        self._armed: threading.Event | None = None
        self.started = time.monotonic()

    # -- setup --------------------------------------------------------------------------

    def setup(self) -> None:
        self.api = KubeApi.from_kubeconfig(self.cluster.kubeconfig)
        self._stack.callback(self.api.client.close)
        kube.install_crds(
            Cluster(self.cluster.kubeconfig, paths.current_bin_dir() / "kubectl", True), self.api, paths.CRDS
        )
        for name in (OPERATOR_NAMESPACE, NAMESPACE):
            self.api.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        self.aws = aws_backend.start_backend()
        self._stack.callback(self.aws.close)
        self.vault = vault_backend.start_backend()
        self._stack.callback(self.vault.close)
        self.toxiproxy = Toxiproxy(self.workdir / "toxiproxy.log")
        self.toxiproxy.start()
        self._stack.callback(self.toxiproxy.stop)
        self.layers: dict[str, FaultLayer] = {}
        for store, upstream in (("aws", self.aws.endpoint), ("vault", self.vault.server.url)):
            listen = self.toxiproxy.proxy(store, upstream.split("://", 1)[1])
            layer = FaultLayer(f"http://{listen}")
            layer.start()
            self._stack.callback(layer.stop)
            self.layers[store] = layer
        vs = Vaultsync(self.api, NAMESPACE)
        credential_secrets(vs, self.aws)
        credential_secrets(vs, self.vault)
        vs.apply_store("aws", {"provider": {"aws": dict(self.aws.provider_config(self.layers["aws"].url))}})
        vs.apply_store(
            "vault",
            {"provider": {"vault": {**self.vault.provider_config(), "server": self.layers["vault"].url}}},
        )
        self.world = World(self.api, NAMESPACE, {"aws": self.aws, "vault": self.vault}, self.form.refresh)
        count = self.form.moto_entries + self.form.vault_entries
        for index in range(count):
            store = "aws" if index < self.form.moto_entries else "vault"
            self.world.add(index, store, workload=index % self.form.workload_every == 0)
        self._start_replicas()
        self.watcher = Watcher(self.world, self.form.sample_seconds, on_pending=self._pending_seen)
        self.watcher.start()
        self._stack.callback(self.watcher.stop)
        self._wait_converged("setup", self.form.setup_bound)
        self._churn_thread = threading.Thread(target=self._churn, name="chaos-churn", daemon=True)
        self._churn_thread.start()
        threading.Thread(target=self._supervise, name="chaos-kubelet", daemon=True).start()
        self._stack.callback(self._stop.set)

    def _start_replicas(self) -> None:
        admin = yaml.safe_load(self.cluster.kubeconfig.read_text())
        duration, deadline, retry = self.form.lease
        for name in REPLICAS:
            config = service_account_kubeconfig(self.api, admin, OPERATOR_NAMESPACE, name)
            direct = self.workdir / f"{name}.kubeconfig"
            direct.write_text(yaml.safe_dump(config))
            gap = GapProxy(direct)
            gap.start()
            self._stack.callback(gap.stop)
            process = OperatorProcess(
                kubeconfig=gap.write_kubeconfig(self.workdir / f"{name}.gap.kubeconfig"),
                namespace=OPERATOR_NAMESPACE,
                log_path=self.workdir / f"{name}.log",
                env={
                    "POD_ID": name,
                    "VAULTSYNC_LEADER_ELECT_LEASE_DURATION": duration,
                    "VAULTSYNC_LEADER_ELECT_RENEW_DEADLINE": deadline,
                    "VAULTSYNC_LEADER_ELECT_RETRY_PERIOD": retry,
                },
            )
            process.start()
            self._stack.callback(process.stop)
            self.replicas.append(Replica(name, process, gap))

    def close(self) -> None:
        self._stop.set()
        self._stack.close()

    # -- churn --------------------------------------------------------------------------

    def _churn(self) -> None:
        budget = 0.0
        while not self._stop.is_set():
            time.sleep(TICK_SECONDS)
            if not self._churning.is_set():
                continue
            budget += self.form.rotations_per_second * TICK_SECONDS
            snapshot = self.watcher.latest
            if snapshot is None:
                continue
            ready = [e for e in self.world.live() if entry_converged(e, snapshot)]
            self.rng.shuffle(ready)
            with self._churn_lock:
                while budget >= 1 and ready and self._churning.is_set():
                    self.world.rotate(ready.pop())
                    budget -= 1
            budget = min(budget, 1.0)

    def _pause_churn(self) -> None:
        self._churning.clear()
        with self._churn_lock:
            pass  # a rotation in progress has finished

    # -- measurement --------------------------------------------------------------------

    def _wait_converged(self, kind: str, bound: float) -> None:
        self._pause_churn()
        started = time.monotonic()
        left: list[str] = []
        while time.monotonic() - started < bound:
            snapshot = self.watcher.fresh(timeout=bound)
            if snapshot is None:
                continue
            left = unconverged(self.world, snapshot)
            if not left:
                self.results.converged_after(kind, snapshot.at - started)
                print(f"[chaos] converged after {kind} in {snapshot.at - started:.1f}s", flush=True)
                return
            time.sleep(0.5)
        self.results.violations.append(
            f"after {kind}: {len(left)} Secrets or restarts not converged within {bound:.0f} s, "
            f"e.g. {left[:5]}"
        )

    def holder(self) -> str | None:
        try:
            lease = client.CoordinationV1Api(self.api.client).read_namespaced_lease(
                LEASE, OPERATOR_NAMESPACE, _request_timeout=5
            )
        except Exception:
            return None
        return str(lease.spec.holder_identity or "") or None

    def leader(self) -> tuple[Replica, str]:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            identity = self.holder()
            for replica in self.replicas:
                if (
                    identity
                    and identity.startswith(replica.name + "_")
                    and replica.process.returncode is None
                ):
                    return replica, identity
            time.sleep(0.2)
        raise AssertionError(f"no running replica holds the Lease (holder {self.holder()!r})")

    # -- faults -------------------------------------------------------------------------

    def episode(self, kind: str, fault: Callable[[], None]) -> None:
        """Churn, inject one fault (churn goes on), stop it, then measure convergence."""
        self._churning.set()
        time.sleep(self.rng.uniform(0.5, 2.0))
        print(f"[chaos] {time.monotonic() - self.started:6.1f}s {kind}", flush=True)
        fault()
        self.results.faults[kind] += 1
        self._wait_converged(kind, self.form.convergence_bound)

    def kill_leader(self, kind: str) -> None:
        replica, identity = self.leader()
        killed_at = self._kill(replica)
        self._restart_after_kill(replica)
        self._measure_failover(identity, killed_at, kind)

    def _kill(self, replica: Replica) -> float:
        """SIGKILL; the replica's lock is held until `_restart_after_kill` started it again."""
        replica.lock.acquire()
        os.kill(replica.process.pid, signal.SIGKILL)
        return time.monotonic()

    def _restart_after_kill(self, replica: Replica) -> None:
        try:
            while replica.process.returncode is None:
                time.sleep(0.05)
            replica.kills += 1
            replica.process.stop()
            replica.process.start()  # as the kubelet would: a new process, a new candidate
        finally:
            replica.lock.release()

    def _supervise(self) -> None:
        """Restart a replica that exited on its own (a leader that lost its Lease exits 1)."""
        while not self._stop.wait(1.0):
            for replica in self.replicas:
                if replica.process.returncode is None or not replica.lock.acquire(blocking=False):
                    continue
                try:
                    if replica.process.returncode is not None and not self._stop.is_set():
                        print(f"[chaos] {replica.name} exited with {replica.process.returncode}", flush=True)
                        replica.exits += 1
                        replica.process.stop()
                        replica.process.start()
                finally:
                    replica.lock.release()

    def _measure_failover(self, identity: str, killed_at: float, kind: str) -> None:
        while time.monotonic() - killed_at < self.form.failover_bound:
            holder = self.holder()
            if holder and holder != identity:
                self.results.failover_seconds.append(round(time.monotonic() - killed_at, 2))
                return
            time.sleep(0.1)
        self.results.violations.append(f"{kind}: no new leader within {self.form.failover_bound:.0f} s")

    def kill_leader_at_pending_restart(self) -> None:
        """SIGKILL the leader the moment a Secret is seen with its pending-restart mark."""
        armed = threading.Event()
        self._armed = armed
        deadline = time.monotonic() + 120
        while not armed.wait(timeout=3.0):
            if time.monotonic() > deadline:
                raise AssertionError("no Secret was ever seen with its pending-restart mark")
            snapshot = self.watcher.latest
            # Only a settled key rotates: two rotations in one restart batch are one restart.
            ready = [e for e in self.world.live() if e.workload and snapshot and entry_converged(e, snapshot)]
            if ready:
                with self._churn_lock:
                    self.world.rotate(self.rng.choice(ready))

    def _pending_seen(self, secret: str) -> None:
        armed, self._armed = self._armed, None
        if armed is None:
            return
        replica, identity = self.leader()
        killed_at = self._kill(replica)
        armed.set()
        threading.Thread(
            target=self._after_pending_kill, args=(replica, identity, killed_at), daemon=True
        ).start()

    def _after_pending_kill(self, replica: Replica, identity: str, killed_at: float) -> None:
        self._restart_after_kill(replica)
        self._measure_failover(identity, killed_at, "operator-sigkill-pending-restart")

    def toxic(self, kind: str, **attributes: int) -> Callable[[], None]:
        def inject() -> None:
            names = {store: self.toxiproxy.toxic(store, kind, **attributes) for store in self.layers}
            time.sleep(self.form.fault_seconds)
            for store, name in names.items():
                self.toxiproxy.clear(store, name)

        return inject

    def vault_down(self) -> None:
        for store in self.layers:
            self.toxiproxy.enabled(store, False)
        self._delete_some()
        time.sleep(self.form.fault_seconds)
        for store in self.layers:
            self.toxiproxy.enabled(store, True)

    def http_status(self, status: int) -> Callable[[], None]:
        def inject() -> None:
            for layer in self.layers.values():
                layer.status = status
            time.sleep(self.form.fault_seconds)
            for layer in self.layers.values():
                layer.status = None

        return inject

    def restart_component(self, component: str) -> Callable[[], None]:
        def inject() -> None:
            self._delete_some()
            self.cluster.restart(component)
            self.cluster.wait_ready()

        return inject

    def watch_gap(self) -> None:
        """The leader's ExternalSecret watch is cut and held while objects are deleted, then 410.

        A leader that loses its Lease under load exits before it resumes its watch; the gap
        is then opened again in front of the next leader.
        """
        for _ in range(3):
            leader, identity = self.leader()
            sent = leader.gap.gone_sent
            try:
                with leader.gap.gap("externalsecrets"):
                    self._delete_some()
                    time.sleep(self.form.fault_seconds)
            except AssertionError:
                if self.holder() != identity:
                    continue
                raise
            deadline = time.monotonic() + 60
            while leader.gap.gone_sent == sent and time.monotonic() < deadline:
                time.sleep(0.2)
            if leader.gap.gone_sent > sent:
                return
        self.results.violations.append("watch-gap-410: no leader's resumed watch was answered 410")

    def _delete_some(self) -> None:
        candidates = [e for e in self.world.live() if e.workload is None]
        for entry in self.rng.sample(candidates, min(len(candidates), max(1, self.form.deletions // 3))):
            self.world.delete(entry)
            self.results.faults["externalsecret-deleted-during-fault"] += 1

    # -- the end ------------------------------------------------------------------------

    def finish(self) -> dict[str, Any]:
        self._pause_churn()
        self._wait_converged("end", self.form.convergence_bound)
        snapshot = self.watcher.fresh()
        self.watcher.stop()
        assert snapshot is not None, "the API server gave no final snapshot"
        lost, duplicated, details = restart_counts(self.world, snapshot)
        self.results.violations.extend(details)
        self.results.violations.extend(self.watcher.violations)
        self._stop.set()
        for replica in self.replicas:
            with replica.lock:
                replica.process.stop()
        users = [f"system:serviceaccount:{OPERATOR_NAMESPACE}:{name}" for name in REPLICAS]
        writes = audit.writes(audit.read(self.cluster.audit_log), users)
        report = audit.check_one_writer(writes, LEASE)
        self.results.violations.extend(report.violations)
        leaked = self._leaks()
        self.results.violations.extend(leaked)
        rotations = sum(e.rotations for e in self.world.entries.values())
        restarts = sum(
            snapshot.generations.get(e.workload, 1) - 1 for e in self.world.live() if e.workload is not None
        )
        failover = self.results.failover_seconds
        convergence = [
            s for kind, values in self.results.convergence_seconds.items() if kind != "setup" for s in values
        ]
        return {
            "form": self.form.name,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "duration_seconds": round(time.monotonic() - self.started, 1),
            "externalsecrets": len(self.world.entries),
            "workloads": sum(1 for e in self.world.entries.values() if e.workload),
            "lease_timings": dict(
                zip(("duration", "renew_deadline", "retry_period"), self.form.lease, strict=True)
            ),
            "refresh_interval": self.form.refresh,
            "faults": dict(sorted(self.results.faults.items())),
            "rotations": rotations,
            "restarts": restarts,
            "lost_restarts": lost,
            "duplicate_restarts": duplicated,
            "invariant_samples": self.watcher.samples,
            "replica_exits": {r.name: r.exits for r in self.replicas},
            "violations": self.results.violations,
            "audit": {
                "writes_by_replica": dict(report.writes),
                "leadership_terms": len(report.terms),
                "overlapping_writes": len(report.violations),
            },
            "failover_seconds": {
                "samples": failover,
                "p50": _percentile(failover, 0.5),
                "max": max(failover) if failover else None,
            },
            "convergence_seconds": {
                "by_fault": self.results.convergence_seconds,
                "p50": _percentile(convergence, 0.5),
                "p99": _percentile(convergence, 0.99),
                "bound": self.form.convergence_bound,
            },
            "fault_layer_answers": {store: dict(layer.answered) for store, layer in self.layers.items()},
        }

    def _leaks(self) -> list[str]:
        """Every value ever written, searched in every log the run produced."""
        logs = [r.process.log_path for r in self.replicas]
        logs += [self.workdir / "toxiproxy.log"]
        logs += sorted((self.cluster.cluster_dir / "logs").glob("*.log"))
        values = self.world.all_values()
        leaks = []
        for path in logs:
            text = path.read_text(errors="replace") if path.exists() else ""
            hits = sum(1 for value in values if value in text)
            if hits:
                leaks.append(f"{path.name}: {hits} secret values appear in the log")
        return leaks


def write_results(results: dict[str, Any]) -> Path:
    path = Path(__file__).with_name("results") / f"{results['form']}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return path
