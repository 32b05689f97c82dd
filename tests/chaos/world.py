"""The world the chaos suite churns: stores behind faults, ExternalSecrets, opted-in workloads.

Every remote key holds one JSON value `{"password": "chaos-<hex>"}`; each rotation writes
a fresh random value, remembered in order, so the checks know the latest value of each key
and can search every log for any value ever written. A key rotates again only once its
Secret shows the previous value and its workload (if any) was restarted for it, so each
rotation is exactly one data change and must be exactly one restart.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.e2e.conftest import GROUP, VERSION, Vaultsync
from tests.env.kube import KubeApi

PENDING_RESTART = "vaultsync.io/pending-restart"
RELOAD = "vaultsync.io/reload"


class Backend(Protocol):
    def write(self, key: str, value: str) -> str: ...


def new_value() -> str:
    return f"chaos-{secrets.token_hex(12)}"


@dataclass
class Entry:
    """One ExternalSecret, its remote key and what was written there."""

    name: str
    store: str
    key: str
    workload: str | None
    values: list[str] = field(default_factory=list)
    deleted: bool = False

    @property
    def latest(self) -> str:
        return self.values[-1]

    @property
    def rotations(self) -> int:
        return len(self.values) - 1


class World:
    def __init__(self, api: KubeApi, namespace: str, backends: dict[str, Backend], refresh: str) -> None:
        self.api = api
        self.namespace = namespace
        self.vs = Vaultsync(api, namespace)
        self.backends = backends
        self.refresh = refresh
        self.entries: dict[str, Entry] = {}
        self.lock = threading.Lock()

    # -- setup --------------------------------------------------------------------------

    def add(self, index: int, store: str, workload: bool) -> Entry:
        name = f"es-{index:04d}"
        entry = Entry(name, store, f"chaos-{store}-{index:04d}", f"app-{index:04d}" if workload else None)
        self._write(entry, new_value())
        if entry.workload:
            self._deployment(entry.workload, entry.name)
        self.vs.external_secret(
            name,
            {
                "storeRef": {"name": store},
                "refreshInterval": self.refresh,
                "data": [{"secretKey": "password", "remoteRef": {"key": entry.key, "property": "password"}}],
            },
        )
        self.entries[name] = entry
        return entry

    def _deployment(self, name: str, secret: str) -> None:
        body = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "annotations": {RELOAD: secret}},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]},
                },
            },
        }
        self.api.apps.create_namespaced_deployment(self.namespace, body)

    # -- churn --------------------------------------------------------------------------

    def _write(self, entry: Entry, value: str) -> None:
        self.backends[entry.store].write(entry.key, json.dumps({"password": value}))
        with self.lock:
            entry.values.append(value)

    def rotate(self, entry: Entry) -> None:
        self._write(entry, new_value())

    def delete(self, entry: Entry) -> None:
        with self.lock:
            entry.deleted = True
        self.api.custom.delete_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "externalsecrets", entry.name
        )

    def live(self) -> Iterator[Entry]:
        return (e for e in list(self.entries.values()) if not e.deleted)

    def all_values(self) -> list[str]:
        with self.lock:
            return [v for e in self.entries.values() for v in e.values]

    # -- observation --------------------------------------------------------------------

    def secrets(self) -> dict[str, tuple[str | None, dict[str, str]]] | None:
        """Each Secret's password and annotations; None when the API server does not answer."""
        try:
            listed = self.api.core.list_namespaced_secret(self.namespace, _request_timeout=20)
        except (ApiException, OSError, Exception):
            return None
        found: dict[str, tuple[str | None, dict[str, str]]] = {}
        for item in listed.items:
            raw = (item.data or {}).get("password")
            found[item.metadata.name] = (
                base64.b64decode(raw).decode() if raw is not None else None,
                dict(item.metadata.annotations or {}),
            )
        return found

    def generations(self) -> dict[str, int] | None:
        """Each Deployment's generation: 1 + the number of changes to its spec (restarts)."""
        try:
            listed = self.api.apps.list_namespaced_deployment(self.namespace, _request_timeout=20)
        except Exception:
            return None
        return {d.metadata.name: int(d.metadata.generation or 0) for d in listed.items}


def service_account_kubeconfig(
    api: KubeApi, admin: dict[str, Any], namespace: str, name: str
) -> dict[str, Any]:
    """A kubeconfig that authenticates as the ServiceAccount `name` (cluster-admin for the suite)."""
    api.core.create_namespaced_service_account(namespace, client.V1ServiceAccount(metadata={"name": name}))
    api.rbac.create_cluster_role_binding(
        {
            "metadata": {"name": f"chaos-{name}"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        }
    )
    token = api.core.create_namespaced_service_account_token(
        name, namespace, {"spec": {"expirationSeconds": 24 * 3600}}
    ).status.token
    cluster = admin["clusters"][0]
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": cluster["name"], "user": name}}],
        "current-context": name,
    }
