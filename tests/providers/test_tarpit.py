"""A tenant's store that answers one byte every two seconds delays only its own ExternalSecrets.

The tarpit is a local TCP server that accepts every connection and trickles one byte every
two seconds, never completing an HTTP answer: hvac's read timeout (per socket read) never
fires, so each call to it holds a thread for as long as the tarpit likes. A tenant's
SecretStore points `vault.server` at it; another namespace's SecretStore reads a real OpenBao.
The operator runs with 8 workers, 2 syncs per store and a 4 s sync deadline.

Proven here: the tarpit's ExternalSecrets end in Ready=False naming the store within the
deadline, write no Secret, and the bystander's rotation reaches its Secret as fast during
the attack as before it (the latencies are printed).
"""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.e2e.conftest import Vaultsync
from tests.env import kube
from tests.env.kube import KubeApi
from tests.env.waiting import eventually
from tests.providers.servers.vault import VaultServer, start_dev_server

pytestmark = pytest.mark.e2e

SYNC_TIMEOUT = 4
TARPITTED = 6  # stores, one ExternalSecret each: as many stuck threads as Python's default pool has


class Tarpit:
    """Accepts connections and sends one byte every `interval` seconds on each, forever."""

    def __init__(self, interval: float = 2.0) -> None:
        self._interval = interval
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed
                return
            self.connections += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with conn:
            while not self._stop.wait(self._interval):
                try:
                    conn.sendall(b"H")
                except OSError:
                    return

    def close(self) -> None:
        self._stop.set()
        self._listener.close()


@pytest.fixture
def tarpit() -> Iterator[Tarpit]:
    server = Tarpit()
    yield server
    server.close()


@pytest.fixture(scope="module")
def vault() -> Iterator[VaultServer]:
    server = start_dev_server()
    yield server
    server.close()


@pytest.fixture
def other_namespace(kube_api: KubeApi) -> Iterator[str]:
    name = kube.create_namespace(kube_api, prefix="vs-test-other-")
    yield name
    kube.delete_namespace(kube_api, name)


def vault_store(vs: Vaultsync, name: str, server: str, token: str) -> None:
    vs.api.core.create_namespaced_secret(
        vs.namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=f"{name}-token"),
            data={"token": base64.b64encode(token.encode()).decode()},
        ),
    )
    auth = {"token": {"secretRef": {"name": f"{name}-token", "key": "token"}}}
    vs.apply_store(name, {"provider": {"vault": {"server": server, "path": "secret", "auth": auth}}})


def read(vs: Vaultsync, name: str, store: str) -> None:
    vs.external_secret(
        name,
        {
            "storeRef": {"name": store},
            "refreshInterval": "1s",
            "data": [{"secretKey": "password", "remoteRef": {"key": "db", "property": "password"}}],
        },
    )


def rotation_latency(vault: VaultServer, vs: Vaultsync, value: str) -> float:
    vault.request("POST", "secret/data/db", {"data": {"password": value}})
    written = time.monotonic()
    vs.wait_data("app", {"password": value}, timeout=60)
    return time.monotonic() - written


def test_a_tarpit_store_times_out_alone_while_another_namespace_keeps_syncing_on_time(
    vault: VaultServer,
    tarpit: Tarpit,
    kube_api: KubeApi,
    namespace: str,
    other_namespace: str,
    install_crds: list[str],
    run_operator: Callable[..., Any],
) -> None:
    tenant, bystander = Vaultsync(kube_api, namespace), Vaultsync(kube_api, other_namespace)
    vault.request("POST", "secret/data/db", {"data": {"password": "v0"}})
    vault_store(bystander, "good", vault.url, vault.root_token)
    for i in range(TARPITTED):
        vault_store(tenant, f"tarpit-{i}", f"http://127.0.0.1:{tarpit.port}", "tenant-token")
    args = ["--namespace", namespace, "--namespace", other_namespace, "--workers", "8"]
    args += ["--store-concurrency", "2", "--sync-timeout", f"{SYNC_TIMEOUT}s"]
    with run_operator(namespace, *args):
        read(bystander, "app", "good")
        bystander.wait_data("app", {"password": "v0"})
        before = [rotation_latency(vault, bystander, f"before-{i}") for i in range(3)]

        started = time.monotonic()
        for i in range(TARPITTED):
            read(tenant, f"slow-{i}", f"tarpit-{i}")
        condition = tenant.wait_reason("slow-0", "ProviderError", timeout=SYNC_TIMEOUT + 20)
        reported = time.monotonic() - started
        assert condition["message"] == (
            f"spec.storeRef.name: SecretStore {namespace}/tarpit-0 did not answer within "
            f"{SYNC_TIMEOUT} s (logging in to the store; --sync-timeout); the Secret is left as it is"
        )

        # Each deadline abandons a thread stuck in a read: enough of them to fill a shared pool.
        def piled_up() -> None:
            assert tarpit.connections >= 2 * TARPITTED

        eventually(piled_up, what="the tarpit to hold its connections", timeout=60)
        during = [rotation_latency(vault, bystander, f"during-{i}") for i in range(3)]
        print(
            f"bystander rotation latency before {before}, during the tarpit {during}; "
            f"tarpit reported after {reported:.1f} s, {tarpit.connections} connections held"
        )

        assert max(during) < max(5.0, 3 * max(before))
        for i in range(TARPITTED):
            tenant.wait_reason(f"slow-{i}", "ProviderError", timeout=SYNC_TIMEOUT + 20)
            assert not tenant.secret_exists(f"slow-{i}")
        tarpit.close()  # the stuck threads' sockets end, so the operator can exit
