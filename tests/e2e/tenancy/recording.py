"""A local HTTP(S) server that records every request: the endpoint a hostile tenant controls.

Attack tests point a tenant's store at it (`vault.server`, `aws.endpoint`, `azurekv.vaultUrl`,
`authorityHost`) and then read what the operator sent: which paths it asked for, and above
all which headers and bodies, since credentials travel there. It answers every request with
one canned JSON reply, which can also make it look like a Vault that holds a secret.
It listens on 127.0.0.1 only, on a port the kernel picks.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import ssl
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.env.waiting import eventually

# Methods a client of Vault, AWS or Azure may send (Vault lists keys with LIST).
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "LIST", "OPTIONS")
STAND_IN_VAULT_TOKEN = "stand-in-vault-client-token"


@dataclass(frozen=True)
class RecordedRequest:
    """One request as it arrived; header names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def text(self) -> str:
        """Everything the client sent, as one string to search for a value."""
        headers = "\n".join(f"{name}: {value}" for name, value in self.headers.items())
        return f"{self.method} {self.path}\n{headers}\n\n{self.body.decode(errors='replace')}"


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up or fails the TLS handshake is not the test's business


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]


class RecordingServer:
    """Records requests and answers each with the reply set by `respond_with` (200 `{}`)."""

    def __init__(self, tls: bool = False) -> None:
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._reply = _Reply(200, b"{}", ())
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        self.ca_pem = ""
        if tls:
            self.ca_pem = _wrap_in_tls(self._server)
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def ca_bundle(self) -> str:
        """The server's certificate as a store's `caBundle` wants it: base64 of the PEM."""
        return base64.b64encode(self.ca_pem.encode()).decode()

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def received_text(self) -> str:
        """Every request received so far, as one string."""
        return "\n---\n".join(request.text() for request in self.requests)

    def respond_with(
        self, status: int = 200, json_body: Any = None, headers: Mapping[str, str] | None = None
    ) -> None:
        """Answer every later request with this status and JSON body (`{}` when None)."""
        body = json.dumps({} if json_body is None else json_body).encode()
        with self._lock:
            self._reply = _Reply(status, body, tuple((headers or {}).items()))

    def respond_as_vault(self, data: Mapping[str, Any], version: int = 1) -> None:
        """Answer like a Vault holding `data` at every KV v2 path.

        One body serves every call a Vault client makes: a login (`auth.client_token`), a
        token lookup (`data.ttl`), a KV v2 read (`data.data`, `data.metadata.version`) and
        a metadata read (`data.current_version`). For a KV v1 store use
        `respond_with(200, {"data": {...}})`.
        """
        self.respond_with(
            200,
            {
                "auth": {"client_token": STAND_IN_VAULT_TOKEN, "lease_duration": 3600, "renewable": False},
                "data": {
                    "data": dict(data),
                    "metadata": {"version": version, "deletion_time": "", "destroyed": False},
                    "current_version": version,
                    "versions": {str(version): {"deletion_time": "", "destroyed": False}},
                    "ttl": 3600,
                    "renewable": False,
                },
            },
        )

    def wait_for_requests(self, count: int = 1, timeout: float = 30) -> list[RecordedRequest]:
        """Wait until at least `count` requests arrived; return them all."""

        def check() -> list[RecordedRequest]:
            seen = self.requests
            assert len(seen) >= count, f"{len(seen)} request(s) so far"
            return seen

        return eventually(check, what=f"{count} request(s) at {self.url}", timeout=timeout)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _record(self, request: RecordedRequest) -> _Reply:
        with self._lock:
            self._requests.append(request)
            return self._reply

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep test output quiet

            def handle_one_request_as_recorded(self) -> None:
                headers = {name.lower(): value for name, value in self.headers.items()}
                reply = server._record(RecordedRequest(self.command, self.path, headers, self._body()))
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply.body)))
                for name, value in reply.headers:
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(reply.body)

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    self.rfile.readline()
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        for method in METHODS:
            setattr(Handler, f"do_{method}", Handler.handle_one_request_as_recorded)
        return Handler


def _wrap_in_tls(server: ThreadingHTTPServer) -> str:
    """Serve TLS with a fresh self-signed certificate for 127.0.0.1; return its PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vaultsync tenancy recording server")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with tempfile.TemporaryDirectory() as directory:
        cert_file, key_file = Path(directory) / "cert.pem", Path(directory) / "key.pem"
        cert_file.write_bytes(cert_pem)
        key_file.write_bytes(key_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
    # The handshake happens in the request's own thread, so a client that never completes
    # it (plain HTTP to an https URL) cannot stall the accepting loop.
    server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    return cert_pem.decode()
