"""Starts and stops the local Azure Key Vault + Entra ID emulator for the azurekv provider tests.

The emulator (`azure_emulator.py` beside this file; why it exists instead of Lowkey Vault is
explained there) runs as its own process on a free 127.0.0.1 port, over HTTPS with a throwaway
CA made here, so the provider is tested with TLS verification on and the CA passed as its
`caBundle`. Its secrets live in a state file in the server's work directory, so `stop()` then
`start()` gives back the same address and the same data. Nothing is downloaded or built:
it starts in well under a second.

    python -m tests.providers.servers.azure run     an emulator in the foreground
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import ipaddress
import json
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.env import processes

EMULATOR = Path(__file__).with_name("azure_emulator.py")
TENANT_ID = "7d1b4c3a-0000-4000-8000-00000000a2ce"
API_VERSION = "7.5"
START_TIMEOUT_SECONDS = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _make_tls(directory: Path) -> None:
    """A CA (the client's trust root) and a server certificate for 127.0.0.1 / localhost."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vaultsync azure emulator CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "server-key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@dataclass
class AzureEmulator:
    """One emulator process on 127.0.0.1; `stop()` and `start()` keep its address and data.

    `identities` maps an app's client id to what the directory knows of it: `secret` (a client
    secret), `federated_subject` (workload identity), `managed` (a managed identity) and the
    vault `permissions` it holds (`get`, `list`, `set`, `delete`, `purge`, `backup`,
    `restore`). `federation` is the trusted issuer of client assertions:
    `{"issuer": ..., "public_key_pem": ...}`.
    """

    identities: dict[str, dict[str, Any]]
    federation: dict[str, str] = field(default_factory=dict)
    next_link_origin: str = ""  # where listing pages say the next one is; "" = this emulator
    tenant_id: str = TENANT_ID
    port: int = field(default_factory=free_port)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="vaultsync-azure-")))
    _process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    def __post_init__(self) -> None:
        _make_tls(self.workdir)
        config = {
            "port": self.port,
            "tenant_id": self.tenant_id,
            "cert_file": str(self.workdir / "server.pem"),
            "key_file": str(self.workdir / "server-key.pem"),
            "state_file": str(self.workdir / "state.json"),
            "identities": self.identities,
            "federation": self.federation,
            "next_link_origin": self.next_link_origin,
        }
        (self.workdir / "config.json").write_text(json.dumps(config))
        atexit.register(self.remove)

    @property
    def url(self) -> str:
        """The vault URL, which is also the authority host and the IMDS host."""
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_pem(self) -> bytes:
        return (self.workdir / "ca.pem").read_bytes()

    @property
    def log_file(self) -> Path:
        return self.workdir / "emulator.log"

    def start(self) -> None:
        if self._process is not None:
            return
        self._log = self.log_file.open("ab")
        self._process = subprocess.Popen(
            [sys.executable, str(EMULATOR), str(self.workdir / "config.json")],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready()

    def stop(self) -> None:
        process, self._process = self._process, None
        processes.stop(process)
        if self._log is not None:
            self._log.close()
            self._log = None

    def remove(self) -> None:
        """Stops the process and deletes its work directory (certificates and data)."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.ca_pem.decode())

    def _request(
        self, method: str, path: str, *, data: bytes | None = None, headers: dict[str, str]
    ) -> dict[str, Any]:
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=10, context=self._ssl_context()) as response:
            raw = response.read()
        result: dict[str, Any] = json.loads(raw) if raw else {}
        return result

    def set_secret(
        self, client_id: str, client_secret: str, name: str, value: str, tags: dict[str, str] | None = None
    ) -> str:
        """Writes a new version of `name` (with `tags`) as the app `client_id`; its version id."""
        body = {"value": value, "tags": tags or {}}
        bundle = self.vault(client_id, client_secret, "PUT", f"/secrets/{name}", body)
        version: str = bundle["id"].rsplit("/", 1)[1]
        return version

    def vault(
        self, client_id: str, client_secret: str, method: str, path: str, body: object = None
    ) -> dict[str, Any]:
        """One Key Vault request as the app `client_id` (a client-secret token first)."""
        form = urllib.parse.urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": client_secret,
                "scope": "https://vault.azure.net/.default",
            }
        ).encode()
        token = self._request(
            "POST",
            f"/{self.tenant_id}/oauth2/v2.0/token",
            data=form,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )["access_token"]
        return self._request(
            method,
            f"{path}?api-version={API_VERSION}",
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )

    def counts(self) -> dict[str, dict[str, int]]:
        """Key Vault requests and answer bytes by operation since the last `reset_counts`."""
        return self._request("GET", "/__bench/counts", headers={})

    def reset_counts(self) -> None:
        self._request("POST", "/__bench/reset", data=b"", headers={})

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"azure emulator exited at start: see {self.log_file}")
            try:
                self._request("GET", "/healthz", headers={})
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"azure emulator did not answer within {START_TIMEOUT_SECONDS}s: see {self.log_file}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.providers.servers.azure", description=__doc__.split("\n")[0]
    )
    parser.add_argument("command", choices=("run",))
    parser.parse_args(argv)
    emulator = AzureEmulator(
        identities={"dev-app": {"secret": "dev-secret", "permissions": ["get", "list", "set"]}}
    )
    emulator.start()  # before blocking the signals: the child would inherit the mask
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    print(
        f"[azure] emulator at {emulator.url}, tenant {emulator.tenant_id}, app 'dev-app' with "
        f"client secret 'dev-secret'; CA at {emulator.workdir / 'ca.pem'}; Ctrl-C or SIGTERM stops it"
    )
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        emulator.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
