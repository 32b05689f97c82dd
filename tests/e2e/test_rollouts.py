"""A rotated value reaches the pods: one ordinary rolling update per change, and nothing else.

The cluster is real enough to show it: kube-controller-manager turns a patched pod template
into a new ReplicaSet (or ControllerRevision) and rolls pods that kwok runs. So every test
counts pod templates in the cluster instead of trusting the operator's logs, and every
"nothing happened" is checked for longer than the coalescing window. Most tests run with the
default quiet period (1 s) under a short window; those about the timing set both.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.e2e.conftest import GROUP, VERSION, Vaultsync, fake_entry
from tests.e2e.workloads import (
    AUTO_RELOAD,
    RELOAD,
    SEEN,
    RolloutWatch,
    Workloads,
    container,
    daemon_set,
    deployment,
    env_from_key,
    pod_spec,
    stateful_set,
    stays,
)
from tests.env.kube import Cluster, KubeApi
from tests.env.operator import OperatorProcess
from tests.env.waiting import eventually

pytestmark = pytest.mark.e2e

WINDOW = 2.0  # --restart-window for these tests: seconds
DEFAULT_QUIET = 1.0  # the operator's default --restart-quiet
QUIET = WINDOW * 3  # how long "no restart" must hold after a change that must not restart
FORCE_SYNC = "vaultsync.io/force-sync"


@dataclass
class Rig:
    """One namespace with a fake store, the operator watching only it, and its workloads."""

    vs: Vaultsync
    workloads: Workloads
    operator: OperatorProcess
    values: dict[str, str]

    def sync(self, name: str, key: str, refresh: str = "0") -> None:
        """An ExternalSecret `name` writing Secret `name` with the remote `key`'s password."""
        self.vs.external_secret(
            name,
            {
                "storeRef": {"name": "fake"},
                "refreshInterval": refresh,
                "data": [{"secretKey": "password", "remoteRef": {"key": key, "property": "password"}}],
            },
        )
        self.vs.wait_data(name, {"password": self.values[key]})

    def rotate(self, changes: Mapping[str, str], *external_secrets: str) -> None:
        """New values in the store, then an immediate re-read by the given ExternalSecrets."""
        self.values.update(changes)
        self.vs.patch_store("fake", {"spec": {"provider": {"fake": {"data": _entries(self.values)}}}})
        self._wait_store_observed()
        token = str(time.time_ns())
        for name in external_secrets:
            self.vs.patch_external_secret(name, {"metadata": {"annotations": {FORCE_SYNC: token}}})

    def _wait_store_observed(self) -> None:
        def check() -> None:
            store = self.vs.api.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.vs.namespace, "secretstores", "fake"
            )
            observed = (store.get("status") or {}).get("observedGeneration")
            assert observed == store["metadata"]["generation"], f"observed {observed}"

        eventually(check, what="the operator to see the store's new generation")

    def metric(self, name: str, **labels: str) -> float:
        return float(self.operator.metric(name, **labels))


def _entries(values: Mapping[str, str]) -> list[dict[str, str]]:
    return [fake_entry(key, {"password": value}) for key, value in sorted(values.items())]


@pytest.fixture
def make_rig(
    vs: Vaultsync, kube_api: KubeApi, namespace: str, run_operator: Callable[..., Any]
) -> Iterator[Callable[..., Rig]]:
    """`make_rig(*operator_args)`: the fake store, then the operator watching only this namespace."""
    with contextlib.ExitStack() as stack:

        def make(*args: str) -> Rig:
            values = {"db": "pw-1", "api": "key-1", "cache": "c-1", "other": "o-1"}
            vs.fake_store("fake", _entries(values))
            op = stack.enter_context(run_operator(namespace, "--namespace", namespace, *args))
            return Rig(vs, Workloads(kube_api, namespace), op, values)

        yield make


@pytest.fixture
def rig(make_rig: Callable[..., Rig]) -> Rig:
    return make_rig("--restart-window", str(WINDOW))


def reads(secret: str) -> dict[str, Any]:
    """A pod spec whose container reads `secret` through an env var."""
    return pod_spec(container(**env_from_key(secret, "password")))


def test_a_rotation_rolls_the_deployment_once_within_its_strategy(rig: Rig) -> None:
    wl = rig.workloads
    wl.create(
        deployment(
            "web",
            annotations={RELOAD: "db-creds"},
            spec=reads("db-creds"),
            replicas=4,
            max_unavailable=1,
            max_surge=1,
            min_ready_seconds=1,
        )
    )
    wl.wait_rolled_out("Deployment", "web")
    rig.sync("db-creds", "db")  # the first sync creates the Secret: no restart
    stays(lambda: _templates_are(wl, "Deployment", "web", 1), seconds=QUIET)

    with RolloutWatch(wl, "web") as watch:
        rig.rotate({"db": "pw-2"}, "db-creds")
        rotated = time.monotonic()
        rig.vs.wait_data("db-creds", {"password": "pw-2"})
        written = time.monotonic()
        wl.wait_templates("Deployment", "web", 2)
        restarted = time.monotonic()
        final = wl.wait_rolled_out("Deployment", "web")
    print(
        f"rotation → Secret written {written - rotated:.2f}s → new ReplicaSet "
        f"{restarted - written:.2f}s (window {WINDOW}s)"
    )

    assert watch.samples_rolling > 0, "the watch never saw the rollout in progress"
    assert watch.max_unavailable <= 1, f"{watch.max_unavailable} replicas were unavailable at once"
    assert watch.max_pods <= 5, f"{watch.max_pods} pods existed at once (4 + maxSurge 1)"
    assert final["status"]["availableReplicas"] == 4
    old, new = (wl.api.apps.read_namespaced_replica_set(n, wl.namespace) for n in wl.replica_sets("web"))
    assert (old.status.replicas, new.status.available_replicas) == (0, 4)
    stays(lambda: _templates_are(wl, "Deployment", "web", 2), seconds=QUIET)


def test_workloads_that_did_not_opt_in_or_watch_another_secret_are_untouched(rig: Rig) -> None:
    wl = rig.workloads
    rig.sync("db-creds", "db")
    rig.sync("other-creds", "other")
    wl.create(deployment("watcher", annotations={RELOAD: "db-creds"}, spec=reads("db-creds")))
    wl.create(deployment("bystander", spec=reads("db-creds")))
    wl.create(deployment("elsewhere", annotations={RELOAD: "other-creds"}, spec=reads("db-creds")))
    wl.create(deployment("auto-other", annotations={AUTO_RELOAD: "true"}, spec=reads("other-creds")))
    for name in ("watcher", "bystander", "elsewhere", "auto-other"):
        wl.wait_rolled_out("Deployment", name)

    rig.rotate({"db": "pw-2"}, "db-creds", "other-creds")
    wl.wait_templates("Deployment", "watcher", 2)

    def untouched() -> None:
        for name in ("bystander", "elsewhere", "auto-other"):
            _templates_are(wl, "Deployment", name, 1)
            assert wl.restarted_at("Deployment", name) is None, f"{name} was patched"

    stays(untouched, seconds=QUIET)


def test_three_secrets_rotated_inside_the_window_make_one_restart(rig: Rig) -> None:
    wl = rig.workloads
    for name, key in (("db-creds", "db"), ("api-keys", "api"), ("cache-creds", "cache")):
        rig.sync(name, key)
    wl.create(
        deployment(
            "web",
            annotations={RELOAD: "db-creds, api-keys,cache-creds"},
            spec=pod_spec(
                container(
                    envFrom=[{"secretRef": {"name": n}} for n in ("db-creds", "api-keys", "cache-creds")]
                )
            ),
        )
    )
    wl.wait_rolled_out("Deployment", "web")

    rig.rotate({"db": "pw-2", "api": "key-2", "cache": "c-2"}, "db-creds", "api-keys", "cache-creds")
    wl.wait_templates("Deployment", "web", 2)
    stays(lambda: _templates_are(wl, "Deployment", "web", 2), seconds=QUIET)
    for name, key in (("db-creds", "db"), ("api-keys", "api"), ("cache-creds", "cache")):
        assert rig.vs.secret_data(name) == {"password": rig.values[key]}
    restarted = wl.events("Deployment", "web", "Restarted")
    assert len(restarted) == 1, [e.message for e in restarted]
    for name in ("db-creds", "api-keys", "cache-creds"):
        assert name in restarted[0].message
    wl.wait_rolled_out("Deployment", "web")


def test_operator_restarts_with_nothing_changed_roll_nothing(rig: Rig) -> None:
    wl = rig.workloads
    rig.sync("db-creds", "db", refresh="1s")
    rig.sync("api-keys", "api", refresh="1s")
    wl.create(deployment("web", annotations={RELOAD: "db-creds,api-keys"}, spec=reads("db-creds")))
    wl.create(deployment("auto", annotations={AUTO_RELOAD: "true"}, spec=reads("api-keys")))
    wl.create(stateful_set("db", annotations={RELOAD: "db-creds"}, spec=reads("db-creds")))
    # A real change first, so the workloads carry seen fingerprints when the operator restarts.
    rig.rotate({"db": "pw-2", "api": "key-2"}, "db-creds", "api-keys")
    for kind, name in (("Deployment", "web"), ("Deployment", "auto"), ("StatefulSet", "db")):
        wl.wait_templates(kind, name, 2)
        wl.wait_rolled_out(kind, name)

    for attempt in range(3):
        rig.operator.restart()
        eventually(
            lambda: _more_syncs(rig, 0, by=4),
            what=f"the restarted operator (#{attempt + 1}) to refresh both ExternalSecrets twice",
        )
        stays(
            lambda: [
                _templates_are(wl, kind, name, 2)
                for kind, name in (("Deployment", "web"), ("Deployment", "auto"), ("StatefulSet", "db"))
            ],
            seconds=WINDOW * 2,
        )


def test_a_workload_that_opts_in_later_restarts_only_on_the_next_real_change(rig: Rig) -> None:
    wl = rig.workloads
    rig.sync("db-creds", "db")
    wl.create(deployment("late", spec=reads("db-creds")))
    wl.wait_rolled_out("Deployment", "late")
    wl.patch("Deployment", "late", {"metadata": {"annotations": {RELOAD: "db-creds"}}})
    wl.create(deployment("new", annotations={AUTO_RELOAD: "true"}, spec=reads("db-creds")))
    wl.wait_rolled_out("Deployment", "new")

    syncs = rig.metric("vaultsync_syncs_total", reason="Synced")
    rig.rotate({}, "db-creds")  # re-read, same value: not a change
    eventually(lambda: _more_syncs(rig, syncs, by=1), what="the forced re-read of db-creds")
    stays(lambda: [_templates_are(wl, "Deployment", n, 1) for n in ("late", "new")], seconds=QUIET)

    rig.rotate({"db": "pw-2"}, "db-creds")
    for name in ("late", "new"):
        wl.wait_templates("Deployment", name, 2)
        wl.wait_rolled_out("Deployment", name)
    seen = wl.get("Deployment", "late")["metadata"]["annotations"][SEEN]
    assert "db-creds" in seen and "pw-2" not in seen


def test_auto_reload_follows_every_kind_of_secret_reference(rig: Rig) -> None:
    wl = rig.workloads
    rig.sync("db-creds", "db")
    auto = {AUTO_RELOAD: "true"}
    specs = {
        "env": reads("db-creds"),
        "env-from": pod_spec(container(envFrom=[{"secretRef": {"name": "db-creds"}}])),
        "volume": pod_spec(
            container(volumeMounts=[{"name": "creds", "mountPath": "/creds"}]),
            volumes=[{"name": "creds", "secret": {"secretName": "db-creds"}}],
        ),
        "projected": pod_spec(
            container(volumeMounts=[{"name": "creds", "mountPath": "/creds"}]),
            volumes=[{"name": "creds", "projected": {"sources": [{"secret": {"name": "db-creds"}}]}}],
        ),
        "init": pod_spec(
            container(), initContainers=[container("init", **env_from_key("db-creds", "password"))]
        ),
    }
    for name, spec in specs.items():
        wl.create(deployment(name, annotations=auto, spec=spec))
    wl.create(deployment("no-refs", annotations=auto))
    for name in [*specs, "no-refs"]:
        wl.wait_rolled_out("Deployment", name)

    rig.rotate({"db": "pw-2"}, "db-creds")
    for name in specs:
        wl.wait_templates("Deployment", name, 2)
    stays(lambda: _templates_are(wl, "Deployment", "no-refs", 1), seconds=QUIET)
    for name in specs:
        wl.wait_rolled_out("Deployment", name)


def test_stateful_sets_and_daemon_sets_roll_too(rig: Rig) -> None:
    wl = rig.workloads
    rig.sync("db-creds", "db")
    wl.create(stateful_set("db", annotations={RELOAD: "db-creds"}, spec=reads("db-creds")))
    wl.create(daemon_set("agent", annotations={AUTO_RELOAD: "true"}, spec=reads("db-creds")))
    for kind, name in (("StatefulSet", "db"), ("DaemonSet", "agent")):
        wl.wait_rolled_out(kind, name)
        _templates_are(wl, kind, name, 1)

    rig.rotate({"db": "pw-2"}, "db-creds")
    for kind, name in (("StatefulSet", "db"), ("DaemonSet", "agent")):
        wl.wait_templates(kind, name, 2)
        wl.wait_rolled_out(kind, name)
        assert wl.restarted_at(kind, name) is not None
    stays(
        lambda: [_templates_are(wl, k, n, 2) for k, n in (("StatefulSet", "db"), ("DaemonSet", "agent"))],
        seconds=QUIET,
    )


def test_a_paused_deployment_is_held_with_an_event_and_rolls_after_resume(rig: Rig) -> None:
    wl = rig.workloads
    rig.sync("db-creds", "db")
    wl.create(deployment("web", annotations={RELOAD: "db-creds"}, spec=reads("db-creds")))
    wl.wait_rolled_out("Deployment", "web")
    wl.patch("Deployment", "web", {"spec": {"paused": True}})

    rig.rotate({"db": "pw-2"}, "db-creds")
    deferred = eventually(
        lambda: _one_event(wl, "web", "RestartDeferred"), what="a RestartDeferred event on web"
    )
    assert deferred.type == "Warning"
    assert "paused" in deferred.message and "db-creds" in deferred.message

    def held() -> None:
        _templates_are(wl, "Deployment", "web", 1)
        assert wl.restarted_at("Deployment", "web") is None, "a paused Deployment was patched"

    stays(held, seconds=12)  # longer than the operator's recheck of paused workloads
    deferrals = wl.events("Deployment", "web", "RestartDeferred")
    assert sum(e.count or 1 for e in deferrals) == 1, "the deferral was announced more than once"

    wl.patch("Deployment", "web", {"spec": {"paused": False}})
    wl.wait_templates("Deployment", "web", 2, timeout=60)
    wl.wait_rolled_out("Deployment", "web")
    eventually(lambda: _one_event(wl, "web", "Restarted"), what="a Restarted event on web")


def test_restarts_are_recorded_as_events_and_counted_in_metrics(rig: Rig) -> None:
    wl = rig.workloads
    rig.sync("db-creds", "db")
    wl.create(deployment("web", annotations={RELOAD: "db-creds"}, spec=reads("db-creds")))
    wl.create(stateful_set("db", annotations={RELOAD: "db-creds"}, spec=reads("db-creds")))
    wl.wait_rolled_out("Deployment", "web")
    wl.wait_rolled_out("StatefulSet", "db")
    counter = "vaultsync_workload_restarts_total"
    assert rig.metric(counter, namespace=wl.namespace, kind="Deployment") == 0

    rig.rotate({"db": "pw-2"}, "db-creds")
    restarted = eventually(lambda: _one_event(wl, "web", "Restarted"), what="a Restarted event")
    assert restarted.type == "Normal"
    assert restarted.message == "restarted: Secret db-creds changed"
    assert restarted.source.component == "vaultsync"
    for_es = eventually(
        lambda: _es_events(rig, "db-creds", count=2), what="WorkloadRestarted events on the ExternalSecret"
    )
    assert sorted(e.message for e in for_es) == [
        "restarted Deployment web: Secret db-creds changed",
        "restarted StatefulSet db: Secret db-creds changed",
    ]
    assert rig.metric(counter, namespace=wl.namespace, kind="Deployment") == 1
    assert rig.metric(counter, namespace=wl.namespace, kind="StatefulSet") == 1
    for event in [restarted, *for_es]:
        assert "pw-" not in event.message


def test_the_restart_cap_queues_the_excess_instead_of_dropping_it(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig("--restart-window", str(WINDOW), "--restarts-per-minute", "1")
    wl = rig.workloads
    rig.sync("db-creds", "db")
    for name in ("first", "second"):
        wl.create(deployment(name, annotations={RELOAD: "db-creds"}, spec=reads("db-creds")))
        wl.wait_rolled_out("Deployment", name)

    rig.rotate({"db": "pw-2"}, "db-creds")

    def one_restarted() -> str:
        counts = {name: wl.templates("Deployment", name) for name in ("first", "second")}
        assert sorted(counts.values()) == [1, 2], f"pod templates {counts}"
        return next(name for name, count in counts.items() if count == 2)

    done = eventually(one_restarted, what="exactly one of two workloads restarted")
    waiting = "second" if done == "first" else "first"
    stays(lambda: _templates_are(wl, "Deployment", waiting, 1), seconds=QUIET)
    wl.wait_templates("Deployment", waiting, 2, timeout=90)
    wl.wait_rolled_out("Deployment", waiting)
    assert rig.operator.logs().count("workload restarted") == 2


def test_a_rotation_restarts_after_the_quiet_period_long_before_the_window(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig("--restart-window", "120")  # and the default quiet period
    wl = rig.workloads
    rig.sync("db-creds", "db")
    wl.create(deployment("web", annotations={RELOAD: "db-creds"}, spec=reads("db-creds")))
    wl.wait_rolled_out("Deployment", "web")

    rig.rotate({"db": "pw-2"}, "db-creds")
    rig.vs.wait_data("db-creds", {"password": "pw-2"})
    written = time.monotonic()
    wl.wait_templates("Deployment", "web", 2, timeout=30)
    print(f"Secret written → new ReplicaSet {time.monotonic() - written:.2f}s (quiet {DEFAULT_QUIET}s)")
    wl.wait_rolled_out("Deployment", "web")


def test_the_window_bounds_the_wait_however_long_the_quiet_period(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig("--restart-window", str(WINDOW), "--restart-quiet", "120")
    wl = rig.workloads
    rig.sync("db-creds", "db")
    wl.create(deployment("web", annotations={RELOAD: "db-creds"}, spec=reads("db-creds")))
    wl.wait_rolled_out("Deployment", "web")

    rig.rotate({"db": "pw-2"}, "db-creds")
    rig.vs.wait_data("db-creds", {"password": "pw-2"})
    wl.wait_templates("Deployment", "web", 2, timeout=30)
    wl.wait_rolled_out("Deployment", "web")


def test_many_workloads_restart_from_one_list_without_a_read_each(rig: Rig) -> None:
    wl = rig.workloads
    names = [f"app-{i:02d}" for i in range(12)]
    rig.sync("db-creds", "db")
    for name in names:
        wl.create(deployment(name, annotations={RELOAD: "db-creds"}, spec=reads("db-creds"), replicas=1))
    for name in names:
        wl.wait_rolled_out("Deployment", name)
    lists = rig.metric("vaultsync_kube_requests_total", verb="list", resource="deployments")
    reads_ = rig.metric("vaultsync_kube_requests_total", verb="get", resource="deployments")

    rig.rotate({"db": "pw-2"}, "db-creds")
    for name in names:
        wl.wait_templates("Deployment", name, 2)
    eventually(
        lambda: _es_events(rig, "db-creds", count=len(names)),
        what="a WorkloadRestarted event on the ExternalSecret per Deployment",
    )
    for name in names:
        _one_event(wl, name, "Restarted")
    assert rig.metric("vaultsync_kube_requests_total", verb="list", resource="deployments") == lists + 1
    # A workload is read only when its patch met a newer resourceVersion (a status update).
    extra_reads = rig.metric("vaultsync_kube_requests_total", verb="get", resource="deployments") - reads_
    assert extra_reads < len(names) / 2, f"{extra_reads:.0f} reads for {len(names)} restarts"
    assert rig.metric("vaultsync_workload_restarts_total", namespace=wl.namespace, kind="Deployment") == len(
        names
    )


def test_a_restart_still_inside_its_window_is_made_when_the_operator_stops(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig("--restart-window", "30", "--restart-quiet", "30")
    wl = rig.workloads
    rig.sync("db-creds", "db")
    wl.create(deployment("web", annotations={RELOAD: "db-creds"}, spec=reads("db-creds")))
    wl.wait_rolled_out("Deployment", "web")

    rig.rotate({"db": "pw-2"}, "db-creds")
    rig.vs.wait_data("db-creds", {"password": "pw-2"})
    _templates_are(wl, "Deployment", "web", 1)  # still waiting for its window
    rig.operator.stop()
    assert rig.operator.returncode == 0, rig.operator.logs()
    assert wl.restarted_at("Deployment", "web") is not None, "the stopping operator dropped the restart"
    _one_event(wl, "web", "Restarted")  # posted in the background, and drained before exiting
    wl.wait_templates("Deployment", "web", 2)
    wl.wait_rolled_out("Deployment", "web")

    rig.operator.start()  # and the next operator does not restart it again
    stays(lambda: _templates_are(wl, "Deployment", "web", 2), seconds=QUIET)


# Checks ----------------------------------------------------------------------------------------


def _templates_are(wl: Workloads, kind: str, name: str, count: int) -> None:
    found = wl.templates(kind, name)
    assert found == count, f"{kind} {name} has {found} pod templates, expected {count}"


def _more_syncs(rig: Rig, before: float, by: int) -> None:
    now = rig.metric("vaultsync_syncs_total", reason="Synced")
    assert now >= before + by, f"{now - before:.0f} successful syncs counted"


def _one_event(wl: Workloads, name: str, reason: str) -> Any:
    found = wl.events("Deployment", name, reason)
    assert len(found) == 1, f"{len(found)} {reason} events"
    return found[0]


def _es_events(rig: Rig, name: str, count: int) -> list[Any]:
    found = [e for e in rig.vs.events(name) if e.reason == "WorkloadRestarted"]
    assert len(found) == count, f"{len(found)} WorkloadRestarted events"
    return found


# Durable restarts ----------------------------------------------------------------------------
# The restart is recorded on the Secret (`vaultsync.io/pending-restart`, in the same write as
# the new data) and handed to the rollouts before the status is written, so neither a SIGKILL
# right after the write nor an API server that refuses the status loses it; the workloads'
# seen-fingerprints keep it to one restart.

PENDING = "vaultsync.io/pending-restart"
HOLD = "600"  # --restart-quiet/--restart-window that keep a restart waiting past the kill
CHECK_SECONDS = 6.0  # how long "still exactly one restart" must hold


def _pending(rig: Rig, name: str) -> str | None:
    annotations: dict[str, str] = rig.vs.secret(name).metadata.annotations or {}
    return annotations.get(PENDING)


def _cleared(rig: Rig, name: str) -> None:
    assert _pending(rig, name) is None, "the pending-restart mark is still there"


def _kill(rig: Rig) -> None:
    os.kill(rig.operator.pid, signal.SIGKILL)

    def dead() -> None:
        assert rig.operator.returncode is not None

    eventually(dead, what="the operator to die")


def test_sigkill_after_the_secret_write_restarts_the_workload_once_after_restart(
    make_rig: Callable[..., Rig], run_operator: Callable[..., Any], namespace: str
) -> None:
    rig = make_rig("--restart-quiet", HOLD, "--restart-window", HOLD)
    wl = rig.workloads
    wl.create(deployment("web", annotations={RELOAD: "db-creds"}, spec=reads("db-creds")))
    wl.wait_rolled_out("Deployment", "web")
    rig.sync("db-creds", "db")
    assert _pending(rig, "db-creds") is None, "a first sync is not a rotation"

    rig.rotate({"db": "pw-2"}, "db-creds")
    rig.vs.wait_data("db-creds", {"password": "pw-2"})
    _kill(rig)  # the restart was still waiting for its (ten-minute) batch
    _templates_are(wl, "Deployment", "web", 1)
    assert _pending(rig, "db-creds"), "the rotation's restart is not recorded on the Secret"

    with run_operator(namespace, "--namespace", namespace, "--restart-window", "2") as operator:
        wl.wait_templates("Deployment", "web", 2)
        eventually(lambda: _cleared(rig, "db-creds"), what="the pending mark to be cleared")
        stays(lambda: _templates_are(wl, "Deployment", "web", 2), seconds=CHECK_SECONDS)
        operator.restart()  # nothing pending any more: a further start restarts nothing
        stays(lambda: _templates_are(wl, "Deployment", "web", 2), seconds=CHECK_SECONDS)


def test_sigkill_after_the_workload_patch_does_not_restart_it_twice(
    make_rig: Callable[..., Rig], run_operator: Callable[..., Any], namespace: str
) -> None:
    """The mark is still there (killed before it was cleared); the seen-fingerprints win."""
    rig = make_rig("--restart-window", "1")
    wl = rig.workloads
    wl.create(deployment("web", annotations={RELOAD: "db-creds"}, spec=reads("db-creds")))
    rig.sync("db-creds", "db")
    rig.rotate({"db": "pw-2"}, "db-creds")
    wl.wait_templates("Deployment", "web", 2)
    eventually(lambda: _cleared(rig, "db-creds"), what="the pending mark to be cleared")
    _kill(rig)
    # As if killed between the patch and the clearing: put the mark back by hand.
    fingerprint = rig.vs.secret("db-creds").metadata.annotations["vaultsync.io/data-fingerprint"]
    rig.vs.api.core.patch_namespaced_secret(
        "db-creds", namespace, {"metadata": {"annotations": {PENDING: fingerprint}}}
    )
    with run_operator(namespace, "--namespace", namespace, "--restart-window", "1"):
        eventually(lambda: _cleared(rig, "db-creds"), what="the resumed mark to be cleared")
        stays(lambda: _templates_are(wl, "Deployment", "web", 2), seconds=CHECK_SECONDS)


@pytest.fixture
def deny_status(cluster: Cluster, kube_api: KubeApi, namespace: str) -> Iterator[Callable[[bool], None]]:
    """`deny_status(True)`: a ValidatingAdmissionPolicy makes the API server refuse every
    write of an ExternalSecret's status in this namespace; `deny_status(False)` lifts it."""
    name = f"deny-status-{namespace}"
    admission = client.AdmissionregistrationV1Api(kube_api.client)

    def deny(on: bool) -> None:
        if not on:
            admission.delete_validating_admission_policy_binding(name)
            admission.delete_validating_admission_policy(name)
            return
        admission.create_validating_admission_policy(
            {
                "metadata": {"name": name},
                "spec": {
                    "failurePolicy": "Fail",
                    "matchConstraints": {
                        "resourceRules": [
                            {
                                "apiGroups": [GROUP],
                                "apiVersions": ["*"],
                                "operations": ["UPDATE"],
                                "resources": ["externalsecrets/status"],
                            }
                        ]
                    },
                    "validations": [{"expression": "false", "message": "status writes refused by the test"}],
                },
            }
        )
        admission.create_validating_admission_policy_binding(
            {
                "metadata": {"name": name},
                "spec": {
                    "policyName": name,
                    "validationActions": ["Deny"],
                    "matchResources": {
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
                    },
                },
            }
        )

        def refused() -> None:
            try:
                kube_api.custom.patch_namespaced_custom_object_status(
                    GROUP, VERSION, namespace, "externalsecrets", "db-creds", {"status": {}}
                )
            except ApiException as exc:
                assert "refused by the test" in str(exc.body), exc.body
                return
            raise AssertionError("the status write was accepted")

        eventually(refused, what="the API server to enforce the policy")

    yield deny
    for delete in (
        admission.delete_validating_admission_policy_binding,
        admission.delete_validating_admission_policy,
    ):
        try:
            delete(name)
        except ApiException as exc:
            if exc.status != 404:
                raise


def test_a_refused_status_write_still_restarts_the_workload_exactly_once(
    rig: Rig, deny_status: Callable[[bool], None]
) -> None:
    wl = rig.workloads
    wl.create(deployment("web", annotations={RELOAD: "db-creds"}, spec=reads("db-creds")))
    rig.sync("db-creds", "db")
    wl.wait_rolled_out("Deployment", "web")
    deny_status(True)

    rig.rotate({"db": "pw-2"}, "db-creds")
    rig.vs.wait_data("db-creds", {"password": "pw-2"})
    wl.wait_templates("Deployment", "web", 2)
    # The sync is retried (the status still cannot be written): no second restart.
    stays(lambda: _templates_are(wl, "Deployment", "web", 2), seconds=CHECK_SECONDS)
    assert '"error": "KubeInvalid"' in rig.operator.logs(), "the status write was never refused"

    deny_status(False)
    started = time.monotonic()

    def caught_up() -> None:
        status = rig.vs.get_external_secret("db-creds")["status"]
        written = rig.vs.secret("db-creds").metadata.annotations["vaultsync.io/data-fingerprint"]
        assert status["dataHMAC"] == written, "the status still names the old data"

    eventually(caught_up, timeout=90, what="the status to catch up once writes are allowed")
    print(f"status caught up {time.monotonic() - started:.1f}s after the policy was lifted")
    stays(lambda: _templates_are(wl, "Deployment", "web", 2), seconds=CHECK_SECONDS)


def test_a_pending_mark_set_by_hand_restarts_nothing(rig: Rig) -> None:
    """A tenant who may edit the Secret cannot forge a rotation: the mark must name the
    fingerprint of the data the Secret holds, which only the operator's key produces."""
    wl = rig.workloads
    wl.create(deployment("web", annotations={RELOAD: "db-creds"}, spec=reads("db-creds")))
    rig.sync("db-creds", "db")
    wl.wait_rolled_out("Deployment", "web")
    rig.vs.api.core.patch_namespaced_secret(
        "db-creds", rig.vs.namespace, {"metadata": {"annotations": {PENDING: "forged-" + "x" * 64}}}
    )
    rig.operator.restart()
    stays(lambda: _templates_are(wl, "Deployment", "web", 1), seconds=CHECK_SECONDS)
    assert "resuming a pending restart" not in rig.operator.logs()
