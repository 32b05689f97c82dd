"""Helpers for end-to-end tests of ExternalSecrets: stores, ExternalSecrets, Secrets, waits.

Every helper talks to the real API server through the test's `kube_api`; waits poll
with a deadline (`eventually`) and fail with what they last saw.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes.client import ApiException

from tests.env import kube
from tests.env.kube import KubeApi
from tests.env.waiting import eventually

GROUP, VERSION = "vaultsync.io", "v1alpha1"


@dataclass
class Vaultsync:
    """The vaultsync API in one namespace, as a test uses it."""

    api: KubeApi
    namespace: str

    # Objects ---------------------------------------------------------------------------------

    def fake_store(
        self, name: str, entries: list[Mapping[str, str]], cluster: bool = False, **extra: Any
    ) -> dict[str, Any]:
        spec: dict[str, Any] = {"provider": {"fake": {"data": list(entries)}}, **extra}
        return self.apply_store(name, spec, cluster=cluster)

    def apply_store(self, name: str, spec: Mapping[str, Any], cluster: bool = False) -> dict[str, Any]:
        kind = "ClusterSecretStore" if cluster else "SecretStore"
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name}, "spec": spec}
        if cluster:
            try:
                self.api.custom.delete_cluster_custom_object(GROUP, VERSION, "clustersecretstores", name)
            except ApiException as exc:
                if exc.status != 404:
                    raise
            result: dict[str, Any] = self.api.custom.create_cluster_custom_object(
                GROUP, VERSION, "clustersecretstores", body
            )
            return result
        created: dict[str, Any] = self.api.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "secretstores", body
        )
        return created

    def patch_store(self, name: str, patch: Mapping[str, Any]) -> None:
        self.api.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "secretstores", name, patch
        )

    def external_secret(self, name: str, spec: Mapping[str, Any], **metadata: Any) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ExternalSecret",
            "metadata": {"name": name, **metadata},
            "spec": spec,
        }
        created: dict[str, Any] = self.api.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "externalsecrets", body
        )
        return created

    def get_external_secret(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.api.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "externalsecrets", name
        )
        return found

    def patch_external_secret(self, name: str, patch: Mapping[str, Any]) -> None:
        self.api.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "externalsecrets", name, patch
        )

    def delete_external_secret(self, name: str) -> None:
        self.api.custom.delete_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "externalsecrets", name, propagation_policy="Foreground"
        )

    def secret(self, name: str) -> Any:
        return self.api.core.read_namespaced_secret(name, self.namespace)

    def secret_data(self, name: str) -> dict[str, str]:
        data = self.secret(name).data or {}
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    def secret_exists(self, name: str) -> bool:
        try:
            self.secret(name)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def events(self, name: str) -> list[Any]:
        found = self.api.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name}"
        )
        return list(found.items)

    # Waits -----------------------------------------------------------------------------------

    def ready(self, name: str) -> dict[str, Any]:
        status = self.get_external_secret(name).get("status") or {}
        return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})

    def wait_reason(self, name: str, reason: str, timeout: float = 60) -> dict[str, Any]:
        def check() -> dict[str, Any]:
            condition = self.ready(name)
            assert condition.get("reason") == reason, f"Ready condition {condition}"
            return condition

        return eventually(check, what=f"ExternalSecret {name} to report {reason}", timeout=timeout)

    def wait_data(self, name: str, expected: Mapping[str, str], timeout: float = 60) -> dict[str, str]:
        def check() -> dict[str, str]:
            assert self.secret_exists(name), f"Secret {name} does not exist"
            data = self.secret_data(name)
            assert data == dict(expected), f"keys {sorted(data)}"
            return data

        return eventually(check, what=f"Secret {name} to hold the expected data", timeout=timeout)

    def wait_store_ready(self, name: str, status: str = "True", cluster: bool = False) -> dict[str, Any]:
        def check() -> dict[str, Any]:
            if cluster:
                body = self.api.custom.get_cluster_custom_object(GROUP, VERSION, "clustersecretstores", name)
            else:
                body = self.api.custom.get_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, "secretstores", name
                )
            conditions = (body.get("status") or {}).get("conditions") or []
            ready = next((c for c in conditions if c["type"] == "Ready"), {})
            assert ready.get("status") == status, f"store conditions {conditions}"
            return dict(ready)

        return eventually(check, what=f"store {name} Ready={status}")


def fake_entry(key: str, value: Any, version: str = "") -> dict[str, str]:
    text = value if isinstance(value, str) else json.dumps(value)
    return {"key": key, "value": text, "version": version}


@pytest.fixture
def vs(kube_api: KubeApi, namespace: str, install_crds: list[str]) -> Vaultsync:
    return Vaultsync(kube_api, namespace)


@pytest.fixture
def operator(run_operator: Callable[..., Any], namespace: str) -> Iterator[Any]:
    """The operator, for the whole test, watching (and keeping its HMAC key in) the test namespace.

    Watching one namespace keeps tests that run side by side on one cluster apart.
    """
    with run_operator(namespace, "--namespace", namespace) as running:
        yield running


@pytest.fixture
def other_namespace(kube_api: KubeApi) -> Iterator[str]:
    """A second fresh namespace, for tests that span namespaces."""
    name = kube.create_namespace(kube_api, prefix="vs-other-")
    yield name
    kube.delete_namespace(kube_api, name)
