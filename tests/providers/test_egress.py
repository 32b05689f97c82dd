"""Each provider's SDK, against real local servers, goes only where its endpoint field says.

Redirects: a server that answers every request with a 302 or 307 to a second server on
another loopback address. hvac (through requests) follows redirects by default and would
send its X-Vault-Token along, azure-core's RedirectPolicy follows them too; botocore does
not. For each provider the read ends in an `EgressRefused` naming the endpoint field, and
the second server never sees a connection.

Deny ranges: a namespaced store whose endpoint is (or resolves to) an address in
`denied_egress` is refused at connect time with the field and the rule named, and the
server there sees no connection; a ClusterSecretStore (to which the core gives no deny
list) reads through the same address. The address is a counting TCP forwarder in front of
each backend's real server (OpenBao, moto, the Azure emulator).
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import re
import socket
import ssl
import tempfile
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.providers.backends.credentials import StaticCredentials
from tests.providers.conftest import Backends
from tests.providers.servers.azure import _make_tls
from vaultsync.errors import EgressRefused
from vaultsync.providers import PROVIDERS
from vaultsync.providers.base import RemoteRef, SecretsClient, StoreContext

NAMESPACED = StoreContext(kind="SecretStore", name="egress", namespace="tenant")
CLUSTER = StoreContext(kind="ClusterSecretStore", name="egress", namespace=None)
TARGET_HOST = "127.0.0.3"  # where the redirects point: another host than the endpoint's


class CountingServer(ThreadingHTTPServer):
    """Counts every TCP connection it accepts, before reading a byte of it."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self.connections = 0

    def verify_request(self, request: Any, client_address: Any) -> bool:
        self.connections += 1
        return True


def serve(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def target() -> Iterator[CountingServer]:
    """The second server, which answers like a Vault/AWS/Azure would; it must see nothing."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            self._answer()

        def _answer(self) -> None:
            body = b'{"data": {"data": {"stolen": "yes"}, "metadata": {"version": 1}}}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return None

    server = CountingServer((TARGET_HOST, 0), Handler)
    thread = serve(server)
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def redirector(status: int, location: str, tls: Path | None) -> tuple[CountingServer, str]:
    """A server on 127.0.0.1 that answers everything with `status` to `location` + the path."""

    class Handler(BaseHTTPRequestHandler):
        def _redirect(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            self.send_response(status)
            self.send_header("Location", location + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = do_PUT = _redirect

        def log_message(self, *args: Any) -> None:
            return None

    server = CountingServer(("127.0.0.1", 0), Handler)
    scheme = "http"
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls / "server.pem", tls / "server-key.pem")
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    serve(server)
    return server, f"{scheme}://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(scope="module")
def tls() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as directory:
        _make_tls(Path(directory))
        yield Path(directory)


CREDENTIALS = StaticCredentials(
    secrets={
        ("token", "token"): b"hvs.a-token",
        ("aws", "id"): b"AKIAEXAMPLEEXAMPLE00",
        ("aws", "secret"): b"secret-access-key-of-the-test",
        ("azure", "secret"): b"client-secret-of-the-test",
    },
    tokens={"reader": "a.service-account.token"},
)


def redirect_config(provider: str, origin: str, tls: Path, *, sts: bool = False) -> dict[str, Any]:
    if provider == "vault":
        return {"server": origin, "auth": {"token": {"secretRef": {"name": "token", "key": "token"}}}}
    if provider == "aws":
        auth: dict[str, Any] = {
            "secretRef": {
                "accessKeyId": {"name": "aws", "key": "id"},
                "secretAccessKey": {"name": "aws", "key": "secret"},
            }
        }
        if sts:
            auth = {"jwt": {"serviceAccountRef": {"name": "reader"}, "roleArn": "arn:aws:iam::1:role/r"}}
        return {"region": "eu-west-1", "endpoint": origin, "auth": auth}
    return {
        "vaultUrl": origin,
        "tenantId": "tenant",
        "authorityHost": origin,
        "caBundle": base64.b64encode((tls / "ca.pem").read_bytes()).decode(),
        "verifyChallengeResource": False,
        "auth": {"clientSecret": {"clientId": "app", "secretRef": {"name": "azure", "key": "secret"}}},
    }


async def read_through(provider: str, config: Mapping[str, Any], store: StoreContext) -> None:
    """Makes a client and reads one key, closing whatever was made."""
    impl = PROVIDERS[provider]
    client: SecretsClient | None = None
    try:
        client = await impl.new_client(impl.parse_config(config), store, CREDENTIALS)
        await client.get_secret(RemoteRef("app/db"))
    finally:
        if client is not None:
            await client.close()


ENDPOINT_FIELD = {
    "vault": "spec.provider.vault.server",
    "aws": "spec.provider.aws.endpoint",
    "azurekv": "spec.provider.azurekv.vaultUrl",
}


@pytest.mark.parametrize("store", [NAMESPACED, CLUSTER], ids=["SecretStore", "ClusterSecretStore"])
@pytest.mark.parametrize("status", [302, 307])
@pytest.mark.parametrize("provider", ["vault", "aws", "azurekv"])
async def test_a_redirect_to_another_host_is_refused_and_never_followed(
    provider: str, status: int, store: StoreContext, target: CountingServer, tls: Path
) -> None:
    elsewhere = f"http://{TARGET_HOST}:{target.server_address[1]}"
    server, origin = redirector(status, elsewhere, tls if provider == "azurekv" else None)
    try:
        with pytest.raises(EgressRefused) as caught:
            await read_through(provider, redirect_config(provider, origin, tls), store)
    finally:
        server.shutdown()
        server.server_close()
    assert server.connections >= 1  # the endpoint was asked...
    assert target.connections == 0  # ...and the place it pointed at never was
    assert caught.value.message.startswith(f"{ENDPOINT_FIELD[provider]}: ")
    assert "redirect" in caught.value.message


async def test_a_redirect_from_sts_is_refused_and_never_followed(target: CountingServer, tls: Path) -> None:
    elsewhere = f"http://{TARGET_HOST}:{target.server_address[1]}"
    server, origin = redirector(302, elsewhere, None)
    try:
        with pytest.raises(EgressRefused, match=r"^spec\.provider\.aws\.endpoint: .*redirect"):
            await read_through("aws", redirect_config("aws", origin, tls, sts=True), NAMESPACED)
    finally:
        server.shutdown()
        server.server_close()
    assert target.connections == 0


async def test_a_redirect_from_the_azure_token_endpoint_is_refused_and_never_followed(
    target: CountingServer, tls: Path, backends: Backends
) -> None:
    """The vault (the emulator) asks for a token; the authority answers with a redirect."""
    backend: Any = backends.get("azure")
    elsewhere = f"http://{TARGET_HOST}:{target.server_address[1]}"
    server, origin = redirector(302, elsewhere, tls)
    trusted = backend.emulator.ca_pem + (tls / "ca.pem").read_bytes()
    config = {
        **backend.provider_config(),
        "authorityHost": origin,
        "caBundle": base64.b64encode(trusted).decode(),
    }
    impl = PROVIDERS["azurekv"]
    try:
        with pytest.raises(EgressRefused, match=r"^spec\.provider\.azurekv\.authorityHost: .*redirect"):
            client = await impl.new_client(impl.parse_config(config), NAMESPACED, backend.credentials())
            try:
                await client.get_secret(RemoteRef("app-db"))
            finally:
                await client.close()
    finally:
        server.shutdown()
        server.server_close()
    assert server.connections >= 1
    assert target.connections == 0


class Forwarder:
    """A TCP forwarder on `host` to a backend's real server, counting the connections it accepts."""

    def __init__(self, host: str, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._listener = socket.create_server((host, 0))
        self.port: int = self._listener.getsockname()[1]
        self.connections = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(self._upstream)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closed = True
        self._listener.close()


# (how the endpoint is written, where the forwarder listens, the ranges denied)
BY_ADDRESS = ("127.0.0.2", "127.0.0.2", ("127.0.0.2/32",))
BY_NAME = ("localhost", "127.0.0.1", ("127.0.0.0/8", "::1/128"))
DENY_CASES = [
    ("vault", BY_ADDRESS),
    ("vault", BY_NAME),
    ("aws", BY_ADDRESS),
    ("aws", BY_NAME),
    ("azurekv", BY_NAME),  # the emulator's certificate names localhost and 127.0.0.1 only
]


def upstream_of(provider: str, config: Mapping[str, Any]) -> str:
    return str(
        config["vaultUrl" if provider == "azurekv" else "server" if provider == "vault" else "endpoint"]
    )


def pointed_at(provider: str, config: Mapping[str, Any], origin: str) -> dict[str, Any]:
    keys = {"vault": ["server"], "aws": ["endpoint"], "azurekv": ["vaultUrl", "authorityHost"]}[provider]
    return {**config, **dict.fromkeys(keys, origin)}


@pytest.mark.parametrize(("provider", "case"), DENY_CASES, ids=[f"{p}-{c[0]}" for p, c in DENY_CASES])
async def test_a_namespaced_store_is_refused_a_denied_address_and_a_cluster_store_is_not(
    provider: str, case: tuple[str, str, tuple[str, ...]], backends: Backends
) -> None:
    host, listen, ranges = case
    backend = backends.get("azure" if provider == "azurekv" else provider)
    config = backend.provider_config()
    key = f"egress/{provider}-{host.replace('.', '-')}"
    backend.write(key, '{"reached": "yes"}')
    forwarder = Forwarder(listen, upstream_of(provider, config))
    scheme = urlsplit(upstream_of(provider, config)).scheme
    config = pointed_at(provider, config, f"{scheme}://{host}:{forwarder.port}")
    impl = PROVIDERS[provider]
    denied = tuple(ipaddress.ip_network(r) for r in ranges)
    namespaced = StoreContext(kind="SecretStore", name="egress", namespace="tenant", denied_egress=denied)
    try:
        with pytest.raises(EgressRefused) as caught:
            client = await impl.new_client(impl.parse_config(config), namespaced, backend.credentials())
            try:
                await client.get_secret(RemoteRef(key))
            finally:
                await client.close()
        assert forwarder.connections == 0
        field = "vaultUrl" if provider == "azurekv" else "server" if provider == "vault" else "endpoint"
        resolved = r"127\.0\.0\.\d+|::1" if host == "localhost" else r"127\.0\.0\.2"
        assert caught.value.message.startswith(f"spec.provider.{provider}.{field}: resolves to ")
        assert any(f"denied by --deny-egress-cidr {r}" in caught.value.message for r in ranges), (
            caught.value.message
        )
        assert re.search(resolved, caught.value.message)

        client = await impl.new_client(impl.parse_config(config), CLUSTER, backend.credentials())
        try:
            value = await client.get_secret(RemoteRef(key))
        finally:
            await client.close()
        assert b"reached" in value.value
        assert forwarder.connections >= 1
    finally:
        forwarder.close()


async def test_sts_under_a_namespaced_store_is_refused_a_denied_address(backends: Backends) -> None:
    """Web identity: the STS call, the first one a store makes, is guarded like the others."""
    backend: Any = backends.get("aws")
    config = backend.web_identity_config()
    forwarder = Forwarder("127.0.0.2", config["endpoint"])
    config = pointed_at("aws", config, f"http://127.0.0.2:{forwarder.port}")
    denied = (ipaddress.ip_network("127.0.0.2/32"),)
    namespaced = StoreContext(kind="SecretStore", name="egress", namespace="tenant", denied_egress=denied)
    impl = PROVIDERS["aws"]
    try:
        with pytest.raises(
            EgressRefused, match=r"^spec\.provider\.aws\.endpoint: resolves to 127\.0\.0\.2, denied"
        ):
            await impl.new_client(impl.parse_config(config), namespaced, backend.credentials())
        assert forwarder.connections == 0
        with backend.authentication_off():  # moto cannot check the unsigned STS call
            client = await impl.new_client(impl.parse_config(config), CLUSTER, backend.credentials())
        await client.close()
        assert forwarder.connections >= 1
    finally:
        forwarder.close()
