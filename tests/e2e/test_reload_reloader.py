"""Stakater Reloader's annotations work unchanged, and a hostile opt-in gets nowhere.

A cluster drops Reloader without editing its workloads: `reloader.stakater.com/auto`,
the typed `secret.`/`configmap.reloader.stakater.com/reload` lists, `search` + `match`
and `ignore` mean what they mean to Reloader. A tenant's workload that names objects of
another namespace, too many names, or no valid name is refused with a Warning Event naming
the annotation, and restarts for nothing that annotation asked; the other workloads of the
namespace are not affected.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.e2e.workloads import Workloads, container, deployment, pod_spec, stays
from tests.env.kube import KubeApi
from tests.env.waiting import eventually

pytestmark = pytest.mark.e2e

WINDOW = 2.0
QUIET = WINDOW * 3
AUTO = "reloader.stakater.com/auto"
SECRET_RELOAD = "secret.reloader.stakater.com/reload"
CONFIGMAP_RELOAD = "configmap.reloader.stakater.com/reload"
SEARCH = "reloader.stakater.com/search"
MATCH = "reloader.stakater.com/match"
IGNORE = "reloader.stakater.com/ignore"
RELOAD_CONFIGMAPS = "vaultsync.io/reload-configmaps"


@pytest.fixture
def operator_for(run_operator: Callable[..., Any]) -> Iterator[Callable[..., None]]:
    with contextlib.ExitStack() as stack:

        def start(namespace: str, *more: str) -> None:
            watched = [arg for ns in (namespace, *more) for arg in ("--namespace", ns)]
            stack.enter_context(run_operator(namespace, *watched, "--restart-window", str(WINDOW)))

        yield start


def _configmap(api: KubeApi, namespace: str, name: str, value: str, **annotations: str) -> None:
    body = {"metadata": {"name": name, "annotations": annotations}, "data": {"k": value}}
    api.core.create_namespaced_config_map(namespace, body)


def _set(api: KubeApi, namespace: str, name: str, value: str) -> None:
    api.core.patch_namespaced_config_map(name, namespace, {"data": {"k": value}})


def _uses(*configmaps: str, secret: str | None = None) -> dict[str, Any]:
    sources: list[dict[str, Any]] = [{"configMapRef": {"name": n}} for n in configmaps]
    if secret:
        sources.append({"secretRef": {"name": secret}})
    return pod_spec(container(envFrom=sources))


def _templates(wl: Workloads, expected: dict[str, int]) -> None:
    found = {name: wl.templates("Deployment", name) for name in expected}
    assert found == expected


def test_reloader_annotations_restart_as_reloader_would(
    operator_for: Callable[..., None], kube_api: KubeApi, namespace: str
) -> None:
    api, wl = kube_api, Workloads(kube_api, namespace)
    _configmap(api, namespace, "cfg", "1")
    _configmap(api, namespace, "tagged", "1", **{MATCH: "true"})
    _configmap(api, namespace, "untagged", "1")
    _configmap(api, namespace, "ignored", "1", **{IGNORE: "true"})
    secret = {"metadata": {"name": "plain"}, "data": {"t": base64.b64encode(b"1").decode()}}
    api.core.create_namespaced_secret(namespace, secret)
    operator_for(namespace)
    wl.create(deployment("auto", annotations={AUTO: "true"}, spec=_uses("cfg", "ignored", secret="plain")))
    wl.create(deployment("typed-secret", annotations={SECRET_RELOAD: "plain"}))
    wl.create(deployment("typed-cm", annotations={CONFIGMAP_RELOAD: "cfg"}))
    wl.create(deployment("search", annotations={SEARCH: "true"}, spec=_uses("tagged", "untagged")))
    counts = {"auto": 1, "typed-secret": 1, "typed-cm": 1, "search": 1}
    for name in counts:
        wl.wait_rolled_out("Deployment", name)

    _set(api, namespace, "untagged", "2")  # search mode: only `match`-tagged objects count
    _set(api, namespace, "ignored", "2")  # `ignore`: never a reason to restart
    stays(lambda: _templates(wl, counts), seconds=QUIET)

    _set(api, namespace, "tagged", "2")
    counts["search"] = 2
    eventually(lambda: _templates(wl, counts), what="the search-mode workload to restart")

    _set(api, namespace, "cfg", "2")
    counts.update({"auto": 2, "typed-cm": 2})
    eventually(lambda: _templates(wl, counts), what="auto and typed-cm to restart")

    api.core.patch_namespaced_secret("plain", namespace, {"data": {"t": base64.b64encode(b"2").decode()}})
    counts.update({"auto": 3, "typed-secret": 2})
    eventually(lambda: _templates(wl, counts), what="auto and typed-secret to restart")
    stays(lambda: _templates(wl, counts), seconds=QUIET)


def test_a_workload_naming_another_namespace_or_too_much_is_refused_and_restarts_for_nothing(
    operator_for: Callable[..., None], kube_api: KubeApi, namespace: str, other_namespace: str
) -> None:
    api, wl = kube_api, Workloads(kube_api, namespace)
    for ns in (namespace, other_namespace):
        _configmap(api, ns, "cfg", "1")
    operator_for(namespace, other_namespace)  # it sees both namespaces: only the names decide
    bad = {
        "cross": ({RELOAD_CONFIGMAPS: f"cfg,{other_namespace}/cfg"}, RELOAD_CONFIGMAPS),
        "too-many": ({CONFIGMAP_RELOAD: ",".join(["cfg"] + [f"c{i}" for i in range(64)])}, CONFIGMAP_RELOAD),
        "bad-name": ({"vaultsync.io/reload": "cfg,Not_A_Name"}, "vaultsync.io/reload"),
    }
    expected = {
        "cross": f"'{other_namespace}/cfg' is not a name: names only, in the workload's own namespace",
        "too-many": "65 names, at most 64",
        "bad-name": "'Not_A_Name' is not a valid object name",
    }
    for name, (opt_in, _) in bad.items():
        wl.create(deployment(name, annotations=opt_in, spec=_uses("cfg")))
    wl.create(deployment("good", annotations={RELOAD_CONFIGMAPS: "cfg"}))
    counts = {name: 1 for name in [*bad, "good"]}
    for name in counts:
        wl.wait_rolled_out("Deployment", name)

    for name, (_, annotation) in bad.items():

        def refused(name: str = name, annotation: str = annotation) -> None:
            events = wl.events("Deployment", name, "InvalidReload")
            messages = [e.message for e in events]
            assert messages == [f"metadata.annotations[{annotation}]: {expected[name]}"], messages
            assert events[0].type == "Warning"

        eventually(refused, what=f"the InvalidReload Event of {name}")

    _set(api, other_namespace, "cfg", "2")
    stays(lambda: _templates(wl, counts), seconds=QUIET)
    _set(api, namespace, "cfg", "2")  # named by each refused annotation too: still nothing
    counts["good"] = 2
    eventually(lambda: _templates(wl, counts), what="the valid workload to restart")
    stays(lambda: _templates(wl, counts), seconds=QUIET)
    for name in bad:
        assert len(wl.events("Deployment", name, "InvalidReload")) == 1, "announced more than once"
        assert not wl.events("Deployment", name, "Restarted")
