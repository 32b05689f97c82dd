"""The chaos suite: the real operator, two replicas, churn, faults, invariants (docs/reliability.md).

One test runs the selected form (`tests.chaos.forms`): it injects each kind of fault in
turn while keys rotate, checks the invariants all along (`tests.chaos.invariants`) and
from the audit log at the end (`tests.chaos.audit`), writes what it measured to
`tests/chaos/results/<form>.json`, and fails with every violation it saw.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.cluster import ChaosCluster, ChaosClusterError, chaos_cluster
from tests.chaos.forms import Form, selected
from tests.chaos.run import Chaos, write_results

FORM = selected()
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(FORM.timeout)]


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[ChaosCluster]:
    cluster = chaos_cluster()
    try:
        cluster.up()
    except ChaosClusterError as exc:
        pytest.fail(f"the chaos suite's cluster could not start: {exc}", pytrace=False)
    yield cluster
    cluster.down()


def _faults(chaos: Chaos, form: Form) -> None:
    for _ in range(form.random_kills):
        chaos.episode("operator-sigkill-leader", lambda: chaos.kill_leader("operator-sigkill-leader"))
    for _ in range(form.pending_kills):
        chaos.episode("operator-sigkill-pending-restart", chaos.kill_leader_at_pending_restart)
    chaos.episode("vault-down", chaos.vault_down)
    chaos.episode("vault-latency", chaos.toxic("latency", latency=2000, jitter=500))
    chaos.episode("vault-tarpit", chaos.toxic("timeout", timeout=0))
    chaos.episode("vault-slow-close", chaos.toxic("slow_close", delay=3000))
    chaos.episode("vault-reset-peer", chaos.toxic("reset_peer", timeout=0))
    chaos.episode("vault-429", chaos.http_status(429))
    chaos.episode("vault-503", chaos.http_status(503))
    chaos.episode("vault-500", chaos.http_status(500))
    chaos.episode("watch-gap-410", chaos.watch_gap)
    chaos.episode("kube-apiserver-restart", chaos.restart_component("kube-apiserver"))
    chaos.episode("etcd-restart", chaos.restart_component("etcd"))


def test_faults_under_churn_break_no_invariant(own_cluster: ChaosCluster, tmp_path: Path) -> None:
    form = FORM
    chaos = Chaos(own_cluster, form, tmp_path)
    try:
        chaos.setup()
        _faults(chaos, form)
        results = chaos.finish()
    finally:
        chaos.close()
    path = write_results(results)
    print(json.dumps(results, indent=2))
    gone = sum(replica.kills for replica in chaos.replicas)
    assert gone == form.random_kills + form.pending_kills, "not every leader kill happened"
    assert results["faults"], "no fault was injected"
    assert len(results["failover_seconds"]["samples"]) == form.random_kills + form.pending_kills, (
        "a leader kill was not followed by a new Lease holder"
    )
    assert results["audit"]["leadership_terms"] >= 2, f"the audit log shows no failover: {results['audit']}"
    assert results["restarts"] > 0 and results["rotations"] > 0, "churn rotated nothing or restarted nothing"
    assert not results["violations"], (
        f"{len(results['violations'])} invariant violations (see {path}):\n"
        + "\n".join(results["violations"][:50])
    )
