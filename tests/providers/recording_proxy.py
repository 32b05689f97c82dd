"""An HTTP proxy in front of a real test server that counts calls and can refuse some.

Two things a real server will not do on demand: tell how many requests a client
made, and slow the client down. This proxy forwards every request unchanged
(so signatures still verify), records each one by its operation (the
`X-Amz-Target` header of AWS JSON APIs, the `Action` of AWS query APIs such as
STS, else method and path), and can answer
the next N requests itself with a canned error, such as AWS's throttling reply,
so the client's real HTTP stack parses a real response. It also keeps the access
key id of every signed request (`access_keys`), to prove whose identity a client used.
"""

from __future__ import annotations

import http.client
import re
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "host"})
SIGV4_KEY_ID = re.compile(r"Credential=([^/,\s]+)/")


@dataclass(frozen=True)
class CannedReply:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


class RecordingProxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()
        self._canned: list[CannedReply] = []
        self._access_keys: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def calls(self, operation: str) -> int:
        with self._lock:
            return self._calls[operation]

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()

    def requests(self) -> int:
        with self._lock:
            return sum(self._calls.values())

    def access_keys(self) -> list[str]:
        """The access key id of each SigV4-signed request, in order."""
        with self._lock:
            return list(self._access_keys)

    def _record_signer(self, authorization: str) -> None:
        found = SIGV4_KEY_ID.search(authorization)
        if found:
            with self._lock:
                self._access_keys.append(found.group(1))

    def refuse_next(self, count: int, reply: CannedReply) -> None:
        """Answer the next `count` requests with `reply` instead of forwarding them."""
        with self._lock:
            self._canned.extend([reply] * count)

    def _next_canned(self, operation: str) -> CannedReply | None:
        with self._lock:
            self._calls[operation] += 1
            return self._canned.pop(0) if self._canned else None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass  # keep test output quiet

            def do_GET(self) -> None:
                self._relay()

            def do_POST(self) -> None:
                self._relay()

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                proxy._record_signer(self.headers.get("Authorization", ""))
                action = parse_qs(body.decode(errors="replace")).get("Action", [""])[0]
                operation = self.headers.get("X-Amz-Target") or action or f"{self.command} {self.path}"
                canned = proxy._next_canned(operation)
                if canned is not None:
                    self._reply(canned.status, list(canned.headers), canned.body)
                    return
                upstream = http.client.HTTPConnection(*proxy._upstream, timeout=30)
                try:
                    headers = dict(self.headers.items())  # Host unchanged: it is signed
                    upstream.request(self.command, self.path, body, headers)
                    response = upstream.getresponse()
                    payload = response.read()
                    kept = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
                    self._reply(response.status, kept, payload)
                finally:
                    upstream.close()

            def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers:
                    if name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


@contextmanager
def recording_proxy(upstream: str) -> Iterator[RecordingProxy]:
    proxy = RecordingProxy(upstream)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.close()
