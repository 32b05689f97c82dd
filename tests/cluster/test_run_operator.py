"""The run_operator fixture starts the real `vaultsync run`, waits for it to be healthy,
restarts it, stops it with SIGTERM, and reports a failed start with the operator's output."""

import functools
import threading
import time
import urllib.request

import pytest

from tests.env.operator import OperatorFailed, OperatorProcess, RunOperator
from tests.env.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("install_crds")]


def _healthz(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as response:
        return int(response.status)


def test_the_operator_answers_healthz_until_stopped(run_operator: RunOperator, namespace: str) -> None:
    with run_operator(namespace, "--namespace", namespace) as operator:
        assert _healthz(operator.health_url) == 200
        operator.restart()
        assert _healthz(operator.health_url) == 200
        assert operator.returncode is None

    assert operator.returncode == 0, operator.logs()
    assert operator.logs().count("--- ") == 2


def test_an_operator_that_cannot_start_fails_with_its_output(
    run_operator: RunOperator, namespace: str
) -> None:
    with (
        pytest.raises(OperatorFailed, match="exited with 2") as failure,
        run_operator(namespace, "--no-such-flag"),
    ):
        pass

    assert "--no-such-flag" in str(failure.value)


def test_sigterm_stops_the_operator_without_waiting_on_a_hung_task(
    run_operator: RunOperator, namespace: str
) -> None:
    """kopf waits 5 s for tasks it left pending (its waiter on our stop flag) before it exits;
    a rolling upgrade or a test teardown would pay that on every stop. A stop takes ~0.1 s.

    Measured from a running operator: /healthz answers from before the Lease, so without the
    wait a loaded machine may stop one still wiring its services, which is another story. Of
    three stops the fastest must be quick: once in CI (2 cores, loaded) one stop still paid
    kopf's wait (5.3 s), a task kopf was starting as the signal came; paying it on every stop,
    what this test guards against, fails all three."""
    took: list[float] = []
    with run_operator(namespace, "--namespace", namespace) as operator:
        for attempt in range(1, STOP_ATTEMPTS + 1):
            if attempt > 1:
                operator.start()
            eventually(
                functools.partial(_started_n, operator, attempt),
                what="the operator to have started",
                timeout=60,
            )
            started = time.monotonic()
            operator.stop()
            took.append(time.monotonic() - started)
            assert operator.returncode == 0, operator.logs()

    assert min(took) < 4.0, f"SIGTERM took {', '.join(f'{t:.1f}' for t in took)} s to stop the operator"


STOP_ATTEMPTS = 3


def _started_n(operator: OperatorProcess, times: int) -> None:
    _started(operator.logs(), times)


def _started(logs: str, times: int = 1) -> None:
    assert logs.count('"vaultsync started"') >= times, "not started yet"


def test_healthz_answers_without_a_gap_from_standby_to_leader(
    run_operator: RunOperator, namespace: str
) -> None:
    """A liveness probe between the Lease being acquired and kopf running must not be refused:
    a kubelet that sees failureThreshold such misses restarts a healthy operator. Four probers
    ask a standby back to back while the leader stops and it takes over, until a second after
    it has started."""
    failures: list[str] = []
    probes = 0
    done = threading.Event()

    def probe(url: str) -> None:
        nonlocal probes
        while not done.is_set():
            try:
                status = _healthz(url)
                if status != 200:
                    failures.append(f"status {status}")
            except OSError as exc:
                failures.append(type(exc).__name__)
            probes += 1

    with run_operator(namespace, "--namespace", namespace) as leader:
        eventually(lambda: _started(leader.logs()), what="the leader to have started", timeout=60)
        with run_operator(namespace, "--namespace", namespace) as heir:
            probers = [threading.Thread(target=probe, args=(heir.health_url,)) for _ in range(4)]
            for prober in probers:
                prober.start()
            try:
                leader.stop()  # releases the Lease: the heir takes it over at once
                eventually(lambda: _started(heir.logs()), what="the heir to have started", timeout=60)
                time.sleep(1.0)
            finally:
                done.set()
                for prober in probers:
                    prober.join()

    assert probes > 0
    assert failures == [], f"{len(failures)} of {probes} probes failed: {failures[:5]}"
