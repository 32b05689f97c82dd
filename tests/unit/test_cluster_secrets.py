"""The ClusterExternalSecret service's passes over an in-memory API: what it writes, and what it
never touches. The real API server plays the same in tests/e2e/test_cluster_external_secrets.py;
here are the cases a real cluster cannot stage on demand (a deletion the watch never reported).
"""

from __future__ import annotations

import asyncio
import copy
import itertools
from typing import Any, cast

from vaultsync.clustersecrets import ClusterSecrets
from vaultsync.errors import KubeConflict, KubeNotFound
from vaultsync.kube import Kube

CHILD = "app-db"
SPEC = {
    "storeRef": {"name": "shared", "kind": "ClusterSecretStore"},
    "data": [{"secretKey": "a", "remoteRef": {"key": "k"}}],
}


class MemoryApi:
    """ExternalSecrets by (namespace, name), with resourceVersions, uids and 409s; the calls made."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, str, str]] = []
        self.statuses: dict[str, dict[str, Any]] = {}
        self.gone: set[str] = set()  # ClusterExternalSecrets deleted
        self._versions = itertools.count(1)

    def _stored(self, body: dict[str, Any]) -> dict[str, Any]:
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(next(self._versions))
        stored["metadata"].setdefault("uid", f"uid-{stored['metadata']['resourceVersion']}")
        return stored

    async def create_custom(self, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("create", namespace, body["metadata"]["name"]))
        key = (namespace, body["metadata"]["name"])
        if key in self.objects:
            raise KubeConflict("create externalsecrets: conflict")
        self.objects[key] = self._stored(body)
        return copy.deepcopy(self.objects[key])

    async def read_custom(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        if (namespace, name) not in self.objects:
            raise KubeNotFound("get externalsecrets: not found")
        return copy.deepcopy(self.objects[(namespace, name)])

    async def replace_custom(
        self, plural: str, namespace: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        self.calls.append(("update", namespace, name))
        current = self.objects[(namespace, name)]
        if body["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"]:
            raise KubeConflict("update externalsecrets: conflict")
        body = {**body, "metadata": {**body["metadata"], "uid": current["metadata"]["uid"]}}
        self.objects[(namespace, name)] = self._stored(body)
        return copy.deepcopy(self.objects[(namespace, name)])

    async def delete_custom(self, plural: str, namespace: str, name: str, uid: str) -> None:
        self.calls.append(("delete", namespace, name))
        if self.objects.get((namespace, name), {}).get("metadata", {}).get("uid") == uid:
            del self.objects[(namespace, name)]

    async def patch_status(
        self, plural: str, namespace: str | None, name: str, status: dict[str, Any]
    ) -> None:
        if name in self.gone:
            raise KubeNotFound("patch clusterexternalsecrets/status: not found")
        self.statuses[name] = {**self.statuses.get(name, {}), **status}


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}}


def declaration(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "db", "uid": "ces-uid", "generation": 1},
        "spec": {
            "externalSecretName": CHILD,
            "namespaceSelectors": [{"matchLabels": {"team": "yes"}}],
            "externalSecretSpec": SPEC,
            **spec,
        },
    }


def service(api: MemoryApi, *namespaces: dict[str, Any]) -> ClusterSecrets:
    found = ClusterSecrets(cast(Kube, api))
    for body in namespaces:
        found.namespace_changed(body, deleted=False)
    found.observe(declaration(), deleted=False)
    return found


def deliver(api: MemoryApi, found: ClusterSecrets) -> None:
    """What the ExternalSecret watch reports after the writes."""
    for body in api.objects.values():
        found.external_secret_changed(copy.deepcopy(body), deleted=False)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_a_child_deleted_while_the_watch_was_away_is_provisioned_again_after_the_relisting() -> None:
    api = MemoryApi()
    found = service(api, namespace("a", team="yes"), namespace("b", team="yes"))
    run(found.reconcile(declaration()))
    deliver(api, found)
    assert set(api.objects) == {("a", CHILD), ("b", CHILD)}

    del api.objects[("a", CHILD)]  # no DELETED event reaches the operator
    run(found.reconcile(declaration()))
    assert ("a", CHILD) not in api.objects  # the mirror still believes in it

    run(found.relisted({("b", CHILD)}))
    run(found.reconcile(declaration()))
    assert ("a", CHILD) in api.objects


def test_a_foreign_external_secret_is_never_written_and_its_namespace_is_failed() -> None:
    api = MemoryApi()
    foreign = {"metadata": {"name": CHILD, "namespace": "a"}, "spec": {"storeRef": {"name": "mine"}}}
    api.objects[("a", CHILD)] = api._stored(foreign)
    before = copy.deepcopy(api.objects[("a", CHILD)])
    found = service(api, namespace("a", team="yes"), namespace("b", team="yes"))
    for _ in range(2):
        run(found.reconcile(declaration()))
        deliver(api, found)
    assert api.objects[("a", CHILD)] == before
    assert [call for call in api.calls if call[1] == "a" and call[0] != "create"] == []
    status = api.statuses["db"]
    assert status["provisionedNamespaces"] == ["b"]
    assert status["failedNamespaces"][0]["namespace"] == "a"


def test_a_namespace_relabelled_out_loses_only_its_own_child() -> None:
    api = MemoryApi()
    found = service(api, namespace("a", team="yes"), namespace("b", team="yes"))
    run(found.reconcile(declaration()))
    deliver(api, found)
    found.namespace_changed(namespace("b", team="no"), deleted=False)
    run(found.reconcile(declaration()))
    assert set(api.objects) == {("a", CHILD)}
    assert ("delete", "b", CHILD) in api.calls
    assert api.statuses["db"]["provisionedNamespaces"] == ["a"]


def test_a_pass_over_what_is_as_declared_writes_nothing() -> None:
    api = MemoryApi()
    found = service(api, namespace("a", team="yes"))
    run(found.reconcile(declaration()))
    deliver(api, found)
    writes = len(api.calls)
    status = copy.deepcopy(api.statuses["db"])
    run(found.reconcile({**declaration(), "status": status}))
    assert len(api.calls) == writes


def test_a_declaration_deleted_while_the_watch_was_away_is_forgotten() -> None:
    api = MemoryApi()
    found = service(api, namespace("a", team="yes"))
    api.gone.add("db")
    run(found.reconcile(declaration()))
    # No further pass is planned for it (its children go by garbage collection).
    assert found._bodies == {} and found._due == {}
