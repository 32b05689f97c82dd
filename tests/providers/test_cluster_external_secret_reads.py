"""One ClusterExternalSecret reaching twenty namespaces costs the vault one read per key per
interval, not twenty: counted at a real OpenBao, in its audit log.

The twenty ExternalSecrets it provisions read one key through one ClusterSecretStore; the
shared fetch cache (single flight, freshness by the asker) serves them all from one read, and
each later refresh from one read or one metadata check (change detection) per interval.
"""

from __future__ import annotations

import base64
import json
import math
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.e2e.conftest import GROUP, VERSION, Vaultsync
from tests.env import kube
from tests.env.kube import KubeApi
from tests.env.waiting import eventually
from tests.providers.servers.vault import VaultServer, start_dev_server

pytestmark = pytest.mark.e2e

NAMESPACES = 20
INTERVAL = 10.0  # seconds, the provisioned ExternalSecrets' refreshInterval
WATCH = 35.0  # seconds of steady state counted: three and a half intervals
LABEL = "vaultsync-test/fan-out"


@pytest.fixture(scope="module")
def vault() -> Iterator[VaultServer]:
    server = start_dev_server(audit=True)
    try:
        yield server
    finally:
        server.close()


def key_calls(server: VaultServer, key: str) -> int:
    """Requests for `key` the vault audited: reads of its data and of its metadata."""
    paths = {f"secret/data/{key}", f"secret/metadata/{key}"}
    with server.audit_log.open("rb") as log:
        entries = [json.loads(line) for line in log if line.strip()]
    return sum(1 for e in entries if e.get("type") == "request" and e["request"]["path"] in paths)


@pytest.fixture
def fanned_out(kube_api: KubeApi) -> Iterator[list[str]]:
    selector = uuid.uuid4().hex[:12]
    names = []
    for _ in range(NAMESPACES):
        name = kube.create_namespace(kube_api, prefix="vs-fan-")
        kube_api.core.patch_namespace(name, {"metadata": {"labels": {LABEL: selector}}})
        names.append(name)
    yield names
    for name in names:
        kube.delete_namespace(kube_api, name)


def test_twenty_namespaces_cost_one_read_per_key_per_interval(
    vault: VaultServer,
    kube_api: KubeApi,
    namespace: str,
    fanned_out: list[str],
    install_crds: list[str],
    run_operator: Callable[..., Any],
) -> None:
    key = f"fanout/{uuid.uuid4().hex[:8]}"
    vault.request("POST", f"secret/data/{key}", {"data": {"password": "shared"}})
    kube_api.core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="vault-token"),
            data={"token": base64.b64encode(vault.root_token.encode()).decode()},
        ),
    )
    store = f"fanout-{namespace}"
    auth = {"token": {"secretRef": {"name": "vault-token", "key": "token", "namespace": namespace}}}
    Vaultsync(kube_api, namespace).apply_store(
        store, {"provider": {"vault": {"server": vault.url, "auth": auth}}}, cluster=True
    )
    selector = kube_api.core.read_namespace(fanned_out[0]).metadata.labels[LABEL]
    ces = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ClusterExternalSecret",
        "metadata": {"name": store},
        "spec": {
            "namespaceSelectors": [{"matchLabels": {LABEL: selector}}],
            "externalSecretName": "shared",
            "externalSecretSpec": {
                "storeRef": {"name": store, "kind": "ClusterSecretStore"},
                "refreshInterval": f"{INTERVAL:g}s",
                "data": [{"secretKey": "password", "remoteRef": {"key": key, "property": "password"}}],
            },
        },
    }
    try:
        with run_operator(namespace):
            kube_api.custom.create_cluster_custom_object(GROUP, VERSION, "clusterexternalsecrets", ces)
            for name in fanned_out:
                Vaultsync(kube_api, name).wait_data("shared", {"password": "shared"}, timeout=120)
            cold = key_calls(vault, key)
            started = time.monotonic()
            time.sleep(WATCH)
            steady = key_calls(vault, key) - cold
            elapsed = time.monotonic() - started
            # Every namespace was provisioned and refreshed meanwhile.
            status = kube_api.custom.get_cluster_custom_object(
                GROUP, VERSION, "clusterexternalsecrets", store
            )
            assert len(status["status"]["provisionedNamespaces"]) == NAMESPACES

            def refreshed() -> None:
                for name in fanned_out:
                    found = Vaultsync(kube_api, name).get_external_secret("shared")
                    assert found["status"]["conditions"][0]["reason"] == "Synced"

            eventually(refreshed, what="every provisioned ExternalSecret to be Synced")
    finally:
        kube_api.custom.delete_cluster_custom_object(GROUP, VERSION, "clusterexternalsecrets", store)
        kube_api.custom.delete_cluster_custom_object(GROUP, VERSION, "clustersecretstores", store)
    intervals = math.ceil(elapsed / INTERVAL)
    print(
        f"[fan-out] {NAMESPACES} namespaces: {cold} vault call(s) to first sync all, "
        f"{steady} in {elapsed:.0f} s of refreshes ({intervals} intervals)"
    )
    # The first sync of all twenty: one read (a second at most, for a refresh racing it).
    assert cold <= 2, cold
    # Then one call per interval (a read or a metadata check), plus one for a boundary.
    assert steady <= intervals + 1, (steady, intervals)
