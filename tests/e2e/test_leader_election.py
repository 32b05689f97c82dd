"""Two real operator processes on one namespace: only the Lease holder writes.

kopf's peering paused only kopf's own watches; the paused replica's scheduler went on
syncing from the spec it last saw, and wrote the old spec's value into the Secret until
the active replica put it back. These tests run two `vaultsync run` processes against
the real API server with short Lease timings (4/3/1 s, tests/env/operator.py) and check
what reaches the cluster: who holds the Lease, what the Secret holds at every change, and
how long a takeover takes after SIGKILL and after SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from kubernetes import client, watch

from tests.e2e.conftest import Vaultsync, fake_entry
from tests.env.kube import KubeApi
from tests.env.operator import OperatorProcess
from tests.env.waiting import eventually

LEASE = "vaultsync"
LEASE_DURATION, RETRY_PERIOD = 4.0, 1.0  # as tests/env/operator.py sets them
KILLS = 3


def _holder(kube_api: KubeApi, namespace: str) -> str:
    lease = client.CoordinationV1Api(kube_api.client).read_namespaced_lease(LEASE, namespace)
    return str(lease.spec.holder_identity or "")


def _wait_holder(kube_api: KubeApi, namespace: str, expected: str, what: str) -> float:
    """Poll the Lease until `expected` holds it; returns when (monotonic)."""

    def check() -> None:
        holder = _holder(kube_api, namespace)
        assert holder == expected, f"held by {holder!r}"

    eventually(check, what=what, timeout=30, interval=0.05)
    return time.monotonic()


def _identity(operator: OperatorProcess) -> str:
    """The identity the process logged when it started waiting for the Lease."""
    for line in operator.logs().splitlines():
        if "waiting for the Lease" in line:
            return str(json.loads(line)["identity"])
    raise AssertionError("the operator never logged its leader election identity")


def _syncs(operator: OperatorProcess) -> int:
    return operator.logs().count('"vaultsync started"')


def _store(value_a: str, value_b: str) -> list[dict[str, str]]:
    return [fake_entry("key-a", value_a), fake_entry("key-b", value_b)]


def _external_secret(vs: Vaultsync, key: str) -> None:
    vs.external_secret(
        "db",
        {
            "refreshInterval": "1s",
            "storeRef": {"name": "fake"},
            "target": {"name": "db"},
            "data": [{"secretKey": "password", "remoteRef": {"key": key}}],
        },
    )


@contextmanager
def _secret_values(kube_api: KubeApi, namespace: str) -> Iterator[list[str]]:
    """Every value of the Secret `db`'s `password`, in the order the API server stored them."""
    seen: list[str] = []
    stop = threading.Event()

    def run() -> None:
        import base64

        while not stop.is_set():
            stream = watch.Watch()
            for event in stream.stream(
                kube_api.core.list_namespaced_secret,
                namespace,
                field_selector="metadata.name=db",
                timeout_seconds=1,
            ):
                data = event["object"].data or {}
                if "password" in data:
                    value = base64.b64decode(data["password"]).decode()
                    if not seen or seen[-1] != value:
                        seen.append(value)
                if stop.is_set():
                    stream.stop()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(timeout=5)


def _start(run_operator: Callable[..., Any], stack: ExitStack, namespace: str, name: str) -> OperatorProcess:
    operator: OperatorProcess = stack.enter_context(
        run_operator(namespace, "--namespace", namespace, env={"POD_ID": name})
    )
    return operator


def test_only_the_lease_holder_syncs_and_the_standby_writes_nothing(
    kube_api: KubeApi, namespace: str, vs: Vaultsync, run_operator: Callable[..., Any]
) -> None:
    with ExitStack() as stack:
        leader = _start(run_operator, stack, namespace, "op-a")
        vs.fake_store("fake", _store("a1", "b1"))
        _external_secret(vs, "key-a")
        vs.wait_data("db", {"password": "a1"})
        standby = _start(run_operator, stack, namespace, "op-b")
        with _secret_values(kube_api, namespace) as seen:
            for value in ("a2", "a3"):
                vs.patch_store("fake", {"spec": {"provider": {"fake": {"data": _store(value, "b1")}}}})
                vs.wait_data("db", {"password": value})
            time.sleep(3 * RETRY_PERIOD)
        assert _holder(kube_api, namespace) == _identity(leader)
        assert _identity(standby).startswith("op-b_")
        assert _syncs(standby) == 0, "the standby started its services"
        assert "acquired the Lease" not in standby.logs()
        assert "provider read" not in standby.logs()
        assert seen == ["a2", "a3"] or seen == ["a1", "a2", "a3"], seen


def _kill_and_wait(
    kube_api: KubeApi, namespace: str, victim: OperatorProcess, heir: OperatorProcess
) -> float:
    os.kill(victim.pid, signal.SIGKILL)
    killed = time.monotonic()
    return _wait_holder(kube_api, namespace, _identity(heir), "takeover after SIGKILL") - killed


def test_a_killed_leader_is_replaced_within_lease_duration_and_retry_period(
    kube_api: KubeApi, namespace: str, vs: Vaultsync, run_operator: Callable[..., Any]
) -> None:
    with ExitStack() as stack:
        current = _start(run_operator, stack, namespace, "op-0")
        vs.fake_store("fake", _store("a0", "b0"))
        _external_secret(vs, "key-a")
        vs.wait_data("db", {"password": "a0"})
        heir = _start(run_operator, stack, namespace, "op-1")
        failovers: list[float] = []
        for kill in range(1, KILLS + 1):
            failovers.append(_kill_and_wait(kube_api, namespace, current, heir))
            current, heir = heir, _start(run_operator, stack, namespace, f"op-{kill + 1}")
            vs.patch_store("fake", {"spec": {"provider": {"fake": {"data": _store(f"a{kill}", "b0")}}}})
            vs.wait_data("db", {"password": f"a{kill}"}, timeout=30)
        print(
            f"failover after SIGKILL: p50 {statistics.median(failovers):.2f} s, "
            f"max {max(failovers):.2f} s, all {[round(f, 2) for f in failovers]}"
        )
        # client-go's bound: the standby notices the dead holder's last renew up to one
        # (jittered) retry period late, waits the lease duration from then, and tries again
        # up to one retry period later: lease duration + 2 x 1.2 x retry period.
        assert max(failovers) <= LEASE_DURATION + 2 * 1.2 * RETRY_PERIOD + 0.5, failovers


def test_a_stopped_leader_releases_the_lease_and_the_standby_takes_over_at_once(
    kube_api: KubeApi, namespace: str, vs: Vaultsync, run_operator: Callable[..., Any]
) -> None:
    with ExitStack() as stack:
        leader = _start(run_operator, stack, namespace, "op-a")
        vs.fake_store("fake", _store("a1", "b1"))
        _external_secret(vs, "key-a")
        vs.wait_data("db", {"password": "a1"})
        standby = _start(run_operator, stack, namespace, "op-b")
        heir_id = _identity(standby)
        os.kill(leader.pid, signal.SIGTERM)
        stopped = time.monotonic()
        released = _wait_holder(kube_api, namespace, "", "release after SIGTERM")
        taken = _wait_holder(kube_api, namespace, heir_id, "takeover after the release")

        def exited() -> None:
            assert leader.returncode == 0, leader.returncode

        eventually(exited, what="the old leader's exit")
        assert "released the Lease" in leader.logs()
        print(
            f"SIGTERM: released after {released - stopped:.2f} s, taken over {taken - released:.2f} s later"
        )
        assert taken - released <= 1.2 * RETRY_PERIOD + 0.5
        vs.patch_store("fake", {"spec": {"provider": {"fake": {"data": _store("a2", "b1")}}}})
        vs.wait_data("db", {"password": "a2"}, timeout=30)


def test_a_spec_change_then_a_rotation_never_flips_the_secret_back_to_the_old_spec(
    kube_api: KubeApi, namespace: str, vs: Vaultsync, run_operator: Callable[..., Any]
) -> None:
    """The finding: the second replica kept syncing `key-a` after the spec moved to `key-b`."""
    with ExitStack() as stack:
        _start(run_operator, stack, namespace, "op-a")
        vs.fake_store("fake", _store("a1", "b1"))
        _external_secret(vs, "key-a")
        vs.wait_data("db", {"password": "a1"})
        _start(run_operator, stack, namespace, "op-b")
        time.sleep(2 * RETRY_PERIOD)  # both replicas have seen the spec and the store
        with _secret_values(kube_api, namespace) as seen:
            vs.patch_external_secret(
                "db", {"spec": {"data": [{"secretKey": "password", "remoteRef": {"key": "key-b"}}]}}
            )
            vs.wait_data("db", {"password": "b1"})
            vs.patch_store("fake", {"spec": {"provider": {"fake": {"data": _store("a2", "b2")}}}})
            vs.wait_data("db", {"password": "b2"})
            time.sleep(5.0)  # several refreshes of both replicas
        after = seen[seen.index("b1") :] if "b1" in seen else seen
        assert after == ["b1", "b2"], f"the Secret's password went through {seen}"


def test_a_leader_that_could_not_renew_writes_nothing_more_and_exits(
    kube_api: KubeApi, namespace: str, vs: Vaultsync, run_operator: Callable[..., Any]
) -> None:
    """Frozen past its renew deadline (SIGSTOP: a long GC pause, a stalled node), the old
    leader wakes up holding the spec it last saw while the new leader synced a newer one:
    it must not write that old spec's value, and it exits to drop its state."""
    with ExitStack() as stack:
        old = _start(run_operator, stack, namespace, "op-a")
        vs.fake_store("fake", _store("a1", "b1"))
        _external_secret(vs, "key-a")
        vs.wait_data("db", {"password": "a1"})
        heir = _start(run_operator, stack, namespace, "op-b")
        os.kill(old.pid, signal.SIGSTOP)
        try:
            _wait_holder(kube_api, namespace, _identity(heir), "takeover from the frozen leader")
            vs.patch_external_secret(
                "db", {"spec": {"data": [{"secretKey": "password", "remoteRef": {"key": "key-b"}}]}}
            )
            vs.wait_data("db", {"password": "b1"})
            vs.patch_store("fake", {"spec": {"provider": {"fake": {"data": _store("a2", "b1")}}}})
        finally:
            os.kill(old.pid, signal.SIGCONT)
        with _secret_values(kube_api, namespace) as seen:

            def exited() -> None:
                assert old.returncode == 1, old.returncode

            eventually(exited, what="the old leader's exit", timeout=30)
            time.sleep(2.0)
        assert seen in ([], ["b1"]), f"the Secret's password went through {seen}"
        assert "lost the Lease" in old.logs()
        assert _holder(kube_api, namespace) == _identity(heir)
