"""Toxiproxy in front of the suite's vault servers: down, slow, tarpit and reset on cue.

Toxiproxy (github.com/Shopify/toxiproxy/v2, built from the Go module proxy by
`tests.env.tools` like the cluster's binaries) is a TCP proxy whose faults ("toxics") are
switched on and off through its HTTP API, so the operator's provider clients see a real
endpoint going down, answering late, trickling bytes or resetting connections. It works
below HTTP, so 429 and 5xx answers come from `tests.chaos.faultlayer` instead.

Toxics used (v2.5.0): `latency` (slow), `timeout` (tarpit: data is held, the connection
closed after `timeout` ms; 0 holds it until the toxic is removed), `slow_close`,
`reset_peer` (TCP RST), and a disabled proxy (down: connections refused).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

from tests.env import processes, tools
from tests.env.operator import free_port

START_TIMEOUT_SECONDS = 20.0


class ToxiproxyError(RuntimeError):
    """Toxiproxy could not start or refused a request."""


class Toxiproxy:
    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        tool = tools.tool("toxiproxy-server")
        tools.ensure_module(next(m for m in tools.MODULES if tool in m.tools))
        self._log = self._log_path.open("ab")
        self._process = subprocess.Popen(
            [str(tool.current), "-host", "127.0.0.1", "-port", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "LOG_LEVEL": "info"},
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ToxiproxyError(
                    f"toxiproxy-server exited with {self._process.returncode}: "
                    f"{self._log_path.read_text(errors='replace')[-2000:]}"
                )
            try:
                self._call("GET", "/version")
                return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        self.stop()
        raise ToxiproxyError(f"toxiproxy-server did not answer on {self.api} within {START_TIMEOUT_SECONDS}s")

    def stop(self) -> None:
        processes.stop(self._process, 5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def proxy(self, name: str, upstream: str) -> str:
        """A new proxy to `upstream` (host:port); returns the address it listens on."""
        listen = f"127.0.0.1:{free_port()}"
        self._call(
            "POST", "/proxies", {"name": name, "listen": listen, "upstream": upstream, "enabled": True}
        )
        return listen

    def enabled(self, name: str, enabled: bool) -> None:
        """A disabled proxy refuses connections and drops the open ones: the endpoint is down."""
        self._call("POST", f"/proxies/{name}", {"enabled": enabled})

    def toxic(self, proxy: str, kind: str, stream: str = "downstream", **attributes: int) -> str:
        name = f"{kind}_{stream}"
        body = {"name": name, "type": kind, "stream": stream, "toxicity": 1.0, "attributes": attributes}
        self._call("POST", f"/proxies/{proxy}/toxics", body)
        return name

    def clear(self, proxy: str, toxic: str) -> None:
        self._call("DELETE", f"/proxies/{proxy}/toxics/{toxic}")

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.api + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                text = response.read()
        except urllib.error.HTTPError as exc:
            raise ToxiproxyError(f"{method} {path}: {exc.code} {exc.read()[:500]!r}") from exc
        return json.loads(text) if text.strip().startswith((b"{", b"[")) else text
