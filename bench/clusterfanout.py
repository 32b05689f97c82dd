"""What one ClusterExternalSecret reaching many namespaces costs the vault: `cluster_fanout`.

One ClusterExternalSecret selects `namespaces` namespaces by label and provisions an
ExternalSecret reading one remote key in each. Measured for vaultsync and each peer with the
same manifests (ESO's ClusterExternalSecret has the same fields): seconds until every
provisioned ExternalSecret is Ready, the provider calls for that first sync (the vault server's counts),
then the provider calls per refresh interval over `cycles` intervals. With the shared cache
it is one read per key per interval, however many namespaces (docs/api.md, "Cost").
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bench import aws, cluster, kube
from bench.operators import CLUSTER_LOAD_LABEL, Operator
from bench.remote import Remote

FANOUT_LABEL = "fanout"
SELECTOR_LABEL = "vaultsync-bench/fanout"
NAME = "bench-fanout"


def run(
    op: Operator,
    prefix: str,
    namespaces: int,
    refresh_seconds: float,
    cycles: int,
    remote: Remote,
    ready_timeout: float,
    note: Callable[[str], None],
) -> dict[str, float]:
    names = [f"{prefix}f-{i:03d}" for i in range(namespaces)]
    kube.create_all(
        [
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": ns, "labels": {SELECTOR_LABEL: prefix}},
            }
            for ns in names
        ]
    )
    tracker = kube.ReadyTracker(
        op.group, op.version, op.plural, f"{CLUSTER_LOAD_LABEL}={FANOUT_LABEL}", kube.condition_ready
    )
    tracker.start()
    declaration = op.cluster_external_secret(
        NAME, {SELECTOR_LABEL: prefix}, aws.key_name(0), f"{refresh_seconds:g}s", FANOUT_LABEL
    )
    try:
        started = op.start()
        op.wait_metrics()
        remote.reset()
        kube.create_all([declaration])
        seconds = tracker.wait_ready(namespaces, ready_timeout, started)
        first = remote.summary()
        if seconds is None:
            note(f"not all {namespaces} provisioned ExternalSecrets Ready within {ready_timeout:.0f}s")
        time.sleep(refresh_seconds / 2)  # off the first sync's wave
        remote.reset()
        time.sleep(cycles * refresh_seconds)
        steady = remote.summary()
    finally:
        op.stop()
        tracker.stop()
        cluster.kubectl("delete", f"clusterexternalsecrets.{op.group}", NAME, "--ignore-not-found")
        kube.delete_namespaces(names, wait=True)
    figures = {
        "namespaces": float(namespaces),
        "remote_keys": 1.0,
        "refresh_interval_seconds": refresh_seconds,
        "ready": float(tracker.counts()[1]),
        "provider_requests_to_all_ready": float(first["provider_requests"]),
        "provider_keys_read_to_all_ready": float(first["provider_keys_read"]),
        "provider_requests_per_cycle": steady["provider_requests"] / cycles,
        "provider_keys_read_per_cycle": steady["provider_keys_read"] / cycles,
    }
    if seconds is not None:
        figures["seconds_to_all_ready"] = seconds
    return figures
