"""Restarts for ConfigMaps and Secrets vaultsync does not write, counted in the real cluster.

A change is made with the ordinary API (as a user or another controller would), and the
proof of a restart is a new ReplicaSet; "nothing happened" is held for longer than the
coalescing window.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e.workloads import (
    AUTO_RELOAD,
    RELOAD,
    SEEN,
    Workloads,
    container,
    deployment,
    pod_spec,
    stays,
)
from tests.env.kube import KubeApi
from tests.env.operator import OperatorProcess
from tests.env.waiting import eventually

pytestmark = pytest.mark.e2e

WINDOW = 2.0
QUIET = WINDOW * 3
RELOAD_CONFIGMAPS = "vaultsync.io/reload-configmaps"


@dataclass
class Rig:
    api: KubeApi
    namespace: str
    workloads: Workloads
    operator: OperatorProcess

    def configmap(self, name: str, data: Mapping[str, str], **metadata: Any) -> None:
        body = {"metadata": {"name": name, **metadata}, "data": dict(data)}
        self.api.core.create_namespaced_config_map(self.namespace, body)

    def set_configmap(self, name: str, patch: Mapping[str, Any]) -> None:
        self.api.core.patch_namespaced_config_map(name, self.namespace, dict(patch))

    def secret(self, name: str, data: Mapping[str, str], **metadata: Any) -> None:
        body = {"metadata": {"name": name, **metadata}, "data": _encoded(data)}
        self.api.core.create_namespaced_secret(self.namespace, body)

    def set_secret(self, name: str, data: Mapping[str, str]) -> None:
        self.api.core.patch_namespaced_secret(name, self.namespace, {"data": _encoded(data)})

    def templates_are(self, name: str, count: int) -> None:
        found = self.workloads.templates("Deployment", name)
        assert found == count, f"Deployment {name} has {found} pod templates, expected {count}"

    def roll(self, *names: str) -> None:
        for name in names:
            self.workloads.wait_rolled_out("Deployment", name)

    def wait_baseline(self, objects: int) -> None:
        """Until the operator holds a first digest of `objects` referenced objects: a change
        made before it has one is, rightly, its baseline and restarts nothing. (Workloads it
        first sees in its initial listing get their objects read only after a short delay.)"""
        eventually(
            lambda: _at_least(self.operator.metric("vaultsync_reload_digests"), objects),
            what=f"the operator to hold digests of {objects} referenced objects",
        )


def _at_least(found: float, wanted: int) -> None:
    assert found >= wanted, f"{found:.0f} digests held"


def _encoded(data: Mapping[str, str]) -> dict[str, str]:
    return {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}


@pytest.fixture
def make_rig(
    kube_api: KubeApi, namespace: str, run_operator: Callable[..., Any]
) -> Iterator[Callable[[], Rig]]:
    with contextlib.ExitStack() as stack:

        def make() -> Rig:
            op = stack.enter_context(
                run_operator(namespace, "--namespace", namespace, "--restart-window", str(WINDOW))
            )
            return Rig(kube_api, namespace, Workloads(kube_api, namespace), op)

        yield make


def env_from_configmap(name: str) -> dict[str, Any]:
    return pod_spec(container(envFrom=[{"configMapRef": {"name": name}}]))


def test_a_referenced_configmap_change_restarts_once_and_an_unrelated_one_nothing(
    make_rig: Callable[[], Rig],
) -> None:
    rig = make_rig()
    rig.configmap("app-config", {"mode": "a"})
    rig.configmap("unrelated", {"x": "1"})
    wl = rig.workloads
    wl.create(deployment("auto", annotations={AUTO_RELOAD: "true"}, spec=env_from_configmap("app-config")))
    wl.create(deployment("named", annotations={RELOAD_CONFIGMAPS: "app-config"}))
    wl.create(deployment("bystander", spec=env_from_configmap("app-config")))
    # `vaultsync.io/reload` names Secrets: a ConfigMap of that name is not what it asks for.
    wl.create(deployment("secret-named", annotations={RELOAD: "app-config"}))
    names = ("auto", "named", "bystander", "secret-named")
    rig.roll(*names)

    rig.set_configmap("unrelated", {"data": {"x": "2"}})
    rig.set_configmap("app-config", {"metadata": {"labels": {"touched": "yes"}}})  # no data change
    stays(lambda: [rig.templates_are(n, 1) for n in names], seconds=QUIET)

    rig.set_configmap("app-config", {"data": {"mode": "b"}})
    for name in ("auto", "named"):
        wl.wait_templates("Deployment", name, 2)
    stays(
        lambda: (
            [rig.templates_are(n, 2) for n in ("auto", "named")]
            + [rig.templates_are(n, 1) for n in ("bystander", "secret-named")]
        ),
        seconds=QUIET,
    )
    restarted = wl.events("Deployment", "auto", "Restarted")
    assert [e.message for e in restarted] == ["restarted: ConfigMap app-config changed"]
    seen = wl.get("Deployment", "auto")["metadata"]["annotations"][SEEN]
    assert "configmap/app-config" in seen and "mode" not in seen and '"b"' not in seen


def test_an_unmanaged_secret_restarts_once_per_change_and_never_on_operator_restart(
    make_rig: Callable[[], Rig],
) -> None:
    rig = make_rig()
    rig.secret("plain", {"token": "t-1"})
    rig.configmap("settings", {"level": "info"})
    wl = rig.workloads
    spec = pod_spec(
        container(
            env=[{"name": "T", "valueFrom": {"secretKeyRef": {"name": "plain", "key": "token"}}}],
            volumeMounts=[{"name": "s", "mountPath": "/s"}],
        ),
        volumes=[{"name": "s", "projected": {"sources": [{"configMap": {"name": "settings"}}]}}],
    )
    wl.create(deployment("named", annotations={RELOAD: "plain"}))
    wl.create(deployment("auto", annotations={AUTO_RELOAD: "true"}, spec=spec))
    rig.roll("named", "auto")
    rig.wait_baseline(2)  # the Secret and the projected ConfigMap

    rig.set_secret("plain", {"token": "t-2"})
    for name in ("named", "auto"):
        wl.wait_templates("Deployment", name, 2)
    rig.roll("named", "auto")
    stays(lambda: [rig.templates_are(n, 2) for n in ("named", "auto")], seconds=QUIET)

    for _ in range(2):  # nothing changed while it was down: nothing restarts
        rig.operator.restart()
        stays(lambda: [rig.templates_are(n, 2) for n in ("named", "auto")], seconds=QUIET)

    # Changed while the operator is down: restarted once by the next start (the workloads'
    # seen-fingerprints hold the digest they were last restarted for).
    rig.operator.stop()
    rig.set_secret("plain", {"token": "t-3"})
    rig.operator.start()
    for name in ("named", "auto"):
        wl.wait_templates("Deployment", name, 3)
    stays(lambda: [rig.templates_are(n, 3) for n in ("named", "auto")], seconds=QUIET)

    # Projected ConfigMap of the auto workload: one more restart, of that workload only.
    rig.set_configmap("settings", {"data": {"level": "debug"}})
    wl.wait_templates("Deployment", "auto", 4)
    stays(lambda: [rig.templates_are("auto", 4), rig.templates_are("named", 3)], seconds=QUIET)


def test_a_configmap_first_seen_after_the_workload_restarts_nothing_and_its_next_change_once(
    make_rig: Callable[[], Rig],
) -> None:
    """The workload references a ConfigMap that does not exist yet, then one that exists
    before the operator knew it was wanted: the first digest is a baseline, not a change."""
    rig = make_rig()
    wl = rig.workloads
    wl.create(deployment("early", annotations={RELOAD_CONFIGMAPS: "later"}))
    rig.roll("early")
    rig.configmap("later", {"k": "1"})
    rig.configmap("existing", {"k": "1"})
    wl.patch("Deployment", "early", {"metadata": {"annotations": {RELOAD_CONFIGMAPS: "later,existing"}}})
    stays(lambda: rig.templates_are("early", 1), seconds=QUIET)

    rig.set_configmap("existing", {"data": {"k": "2"}})
    wl.wait_templates("Deployment", "early", 2)
    rig.set_configmap("later", {"data": {"k": "2"}})
    wl.wait_templates("Deployment", "early", 3)
    stays(lambda: rig.templates_are("early", 3), seconds=QUIET)
