"""The chart grants exactly the verbs the operator uses, each tied to the call that uses it.

`vaultsync.access.API_ACCESS` lists every (apiGroup, resource, verb) with its user: a
`Kube` method or kopf. These tests hold that table to the code on one side (each `Kube`
method's request verbs, read from kube.py's syntax tree; kopf's watches, read from the
handler registry) and to the rendered chart on the other, in every mode. A verb added to
kube.py without a table entry, a table entry nobody calls, a grant nobody uses or a use
nobody grants each fail here. tests/image/test_image_operator.py then runs the operator
with exactly the chart's RBAC against a real API server.
"""

from __future__ import annotations

import ast
import inspect
from collections import defaultdict
from pathlib import Path

import pytest

from tests.chart.helm import Manifest, find, render
from vaultsync import access, handlers, kube
from vaultsync.access import API_ACCESS
from vaultsync.registry import REGISTRY

Permission = tuple[str, str, str]
REQUEST_HELPERS = {"_json", "_request"}
WATCHED = ["team-a", "team-b"]


def _kube_class() -> ast.ClassDef:
    tree = ast.parse(Path(inspect.getfile(kube)).read_text())
    return next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Kube")


def _self_calls(method: ast.AsyncFunctionDef) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(method)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "self"
    ]


def kube_request_verbs() -> dict[str, set[str]]:
    """`Kube.<method>` -> the RBAC verbs of the requests it sends itself (first argument)."""
    verbs: dict[str, set[str]] = defaultdict(set)
    for method in _kube_class().body:
        if not isinstance(method, ast.AsyncFunctionDef) or method.name.startswith("_"):
            continue
        for call in _self_calls(method):
            assert isinstance(call.func, ast.Attribute)
            if call.func.attr not in REQUEST_HELPERS:
                continue
            verb = call.args[0]
            assert isinstance(verb, ast.Constant) and isinstance(verb.value, str), (
                f"Kube.{method.name}: the verb of a request must be a literal"
            )
            verbs[f"Kube.{method.name}"].add(verb.value)
    return dict(verbs)


def test_every_kube_request_verb_is_in_the_table_and_nothing_else() -> None:
    table: dict[str, set[str]] = defaultdict(set)
    for entry in API_ACCESS:
        if entry.used_by.startswith("Kube."):
            table[entry.used_by].add(entry.verb)
    assert kube_request_verbs() == dict(table)


def test_kube_methods_without_requests_only_compose_other_kube_methods() -> None:
    """ensure_hmac_key & co. need nothing of their own: they call methods in the table."""
    public = {m.name for m in _kube_class().body if isinstance(m, ast.AsyncFunctionDef)}
    requesting = {name.removeprefix("Kube.") for name in kube_request_verbs()}
    for method in _kube_class().body:
        if not isinstance(method, ast.AsyncFunctionDef) or method.name in requesting:
            continue
        if method.name.startswith("_") or method.name == "close":
            continue
        called = {c.func.attr for c in _self_calls(method) if isinstance(c.func, ast.Attribute)}
        assert called & requesting, f"Kube.{method.name} sends no request and calls none"
        assert called <= public, f"Kube.{method.name} calls {called - public}"


def test_the_literal_resources_of_kube_requests_match_the_table() -> None:
    """Where kube.py names the resource literally, it is the table's resource for that call."""
    table = {(e.used_by, e.verb): set() for e in API_ACCESS}
    for entry in API_ACCESS:
        table[(entry.used_by, entry.verb)].add(entry.resource)
    for method in _kube_class().body:
        if not isinstance(method, ast.AsyncFunctionDef) or method.name.startswith("_"):
            continue
        for call in _self_calls(method):
            assert isinstance(call.func, ast.Attribute)
            if call.func.attr not in REQUEST_HELPERS:
                continue
            verb, what = call.args[0], call.args[1]
            assert isinstance(verb, ast.Constant)
            if isinstance(what, ast.Constant):
                assert what.value in table[(f"Kube.{method.name}", verb.value)], (
                    f"Kube.{method.name} {verb.value} {what.value}"
                )


def test_kopf_watches_exactly_the_resources_the_table_says() -> None:
    assert handlers  # importing it registers the handlers
    watched = {
        (h.selector.group or "", h.selector.plural or h.selector.any_name)
        for h in REGISTRY._watching.get_all_handlers()
        if h.selector is not None
    }
    table = {(e.group, e.resource) for e in API_ACCESS if e.used_by == access.KOPF_WATCH}
    assert watched == table
    for group, resource in watched:
        verbs = {e.verb for e in API_ACCESS if (e.group, e.resource) == (group, resource)}
        assert {"list", "watch"} <= verbs


def granted(manifests: list[Manifest]) -> set[Permission]:
    """Every (apiGroup, resource, verb) any Role or ClusterRole of the release grants."""
    out: set[Permission] = set()
    for role in find(manifests, "ClusterRole") + find(manifests, "Role"):
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    out |= {(group, resource, verb) for verb in rule["verbs"]}
    return out


def used() -> set[Permission]:
    return {(e.group, e.resource, e.verb) for e in API_ACCESS}


@pytest.mark.parametrize(
    "values",
    [{}, {"replicaCount": 2}, {"watchNamespaces": WATCHED}, {"replicaCount": 3, "watchNamespaces": WATCHED}],
    ids=["cluster", "cluster-ha", "namespaced", "namespaced-ha"],
)
def test_the_chart_grants_exactly_the_verbs_the_operator_uses(
    values: dict[str, object], tmp_path: Path
) -> None:
    grants = granted(render(values, tmp_path))
    needed = used()
    unused = {g: "granted, used by nothing" for g in grants - needed}
    missing = {u: "used, not granted" for u in needed - grants}
    assert not unused and not missing, {**unused, **missing}


def test_in_namespaced_mode_each_watched_namespace_gets_every_namespaced_use(tmp_path: Path) -> None:
    manifests = render({"watchNamespaces": WATCHED}, tmp_path)
    cluster_scoped = {
        ("", "namespaces"),
        ("apiextensions.k8s.io", "customresourcedefinitions"),
        ("authentication.k8s.io", "tokenreviews"),
    } | {
        ("vaultsync.io", r)
        for r in (
            "clustersecretstores",
            "clustersecretstores/status",
            "clusterexternalsecrets",
            "clusterexternalsecrets/status",
        )
    }
    # The leader election Lease lives in the release namespace only (its own Role).
    cluster_scoped.add(("coordination.k8s.io", "leases"))
    namespaced = {p for p in used() if (p[0], p[1]) not in cluster_scoped}
    for role in find(manifests, "Role"):
        if role["metadata"]["namespace"] in WATCHED:
            assert granted([role]) == namespaced
