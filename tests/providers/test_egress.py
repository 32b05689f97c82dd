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
import ipaddress
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
