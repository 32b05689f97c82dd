"""What restarts for ConfigMaps and unmanaged Secrets cost: the `config_watch` scenario.

vaultsync watches every ConfigMap and Secret of the cluster to restart the workloads that
opted in (operator/vaultsync/unmanaged.py). The cost of that is measured on its own, with no
ExternalSecret: the operator's RSS and CPU with no such object, then with `objects` of them
(half ConfigMaps, half Secrets of ~1 KiB, none written by vaultsync) of which only
`referenced` are named by opted-in Deployments; then the CPU of a change to every
unreferenced ConfigMap (which must restart nothing) and the restarts of a change to every
referenced one (one each). `vaultsync_reload_digests` shows how many objects it remembers.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client

from bench import kube, procstat
from bench.operators import Operator, metric_sum
from bench.scenarios import _deployment

VALUE = "x" * 1024
SETTLE_SECONDS = 10.0


def _objects(namespaces: list[str], objects: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}} for ns in namespaces
    ]
    for i in range(objects):
        ns = namespaces[i % len(namespaces)]
        if i % 2 == 0:
            out.append(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": f"cm-{i:05d}", "namespace": ns},
                    "data": {"v": VALUE},
                }
            )
        else:
            data = {"v": base64.b64encode(VALUE.encode()).decode()}
            out.append(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": f"s-{i:05d}", "namespace": ns},
                    "data": data,
                }
            )
    return out


def _workloads(namespaces: list[str], referenced: int) -> list[dict[str, Any]]:
    """`referenced` Deployments, each naming one ConfigMap of its namespace."""
    out = []
    for j in range(referenced):
        i = 2 * j  # ConfigMaps have even indexes
        ns = namespaces[i % len(namespaces)]
        deployment = _deployment(
            ns, f"web-{j:04d}", "absent", {"vaultsync.io/reload-configmaps": f"cm-{i:05d}"}
        )
        out.append(deployment)
    return out


def _wait(what: Any, until: float, timeout: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if what() >= until:
            return time.monotonic() - started
        time.sleep(0.5)
    return None


def _patch_configmaps(names: list[tuple[str, str]], value: str) -> float:
    api = client.CoreV1Api(kube.api_client())
    started = time.monotonic()
    for ns, name in names:
        api.patch_namespaced_config_map(name, ns, {"data": {"v": value}})
    return time.monotonic() - started


def run(
    op: Operator, prefix: str, objects: int, referenced: int, namespaces: int, note: Callable[[str], None]
) -> dict[str, float]:
    """The figures measured; on a failure part way (the operator exiting on a loaded machine),
    those measured until then, and a note saying where it stopped."""
    names = [f"{prefix}cw-{i:03d}" for i in range(namespaces)]
    figures: dict[str, float] = {"objects": objects, "referenced": referenced, "namespaces": namespaces}
    try:
        op.start()
        op.wait_metrics()
        time.sleep(SETTLE_SECONDS)
        empty = procstat.sample(op.pid)
        op.stop()
        figures["rss_mib_without_objects"] = empty.rss_mib

        figures["creation_seconds"] = kube.create_all(
            _objects(names, objects) + _workloads(names, referenced)
        )
        started = op.start()
        op.wait_metrics()
        digests = _wait(lambda: metric_sum(op.metrics(), "vaultsync_reload_digests"), referenced, 600)
        if digests is not None:
            figures["seconds_to_all_digests"] = time.monotonic() - started
        time.sleep(SETTLE_SECONDS)
        loaded = procstat.sample(op.pid)
        figures.update(
            rss_mib_with_objects=loaded.rss_mib,
            peak_rss_mib_with_objects=loaded.peak_rss_mib,
            cpu_seconds_start_and_listing=loaded.cpu_seconds,
            digests_kept=metric_sum(op.metrics(), "vaultsync_reload_digests"),
        )

        unreferenced = [(names[i % namespaces], f"cm-{i:05d}") for i in range(2 * referenced, objects, 2)]
        cpu = procstat.cpu_seconds(op.pid)
        figures["unreferenced_changes"] = len(unreferenced)
        figures["unreferenced_change_seconds"] = _patch_configmaps(unreferenced, "y" * 1024)
        time.sleep(SETTLE_SECONDS)
        figures["cpu_seconds_for_unreferenced_changes"] = procstat.cpu_seconds(op.pid) - cpu
        figures["restarts_after_unreferenced_changes"] = metric_sum(
            op.metrics(), "vaultsync_workload_restarts_total"
        )

        wanted = [(names[(2 * j) % namespaces], f"cm-{2 * j:05d}") for j in range(referenced)]
        _patch_configmaps(wanted, "z" * 1024)
        _wait(lambda: metric_sum(op.metrics(), "vaultsync_workload_restarts_total"), referenced, 300)
        time.sleep(SETTLE_SECONDS)
        figures["restarts_after_referenced_changes"] = metric_sum(
            op.metrics(), "vaultsync_workload_restarts_total"
        )
        return figures
    except OSError as exc:  # the metrics endpoint is gone: the operator exited
        note(f"stopped after {list(figures)[-1]}: {exc}; see bench/.work/logs/vaultsync.log")
        return figures
    finally:
        op.stop()
        kube.delete_namespaces(names, wait=True)
