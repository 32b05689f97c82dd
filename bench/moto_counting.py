"""moto's AWS Secrets Manager with a request counter in front, counted on the server side.

Run as `python -m bench.moto_counting --port P`: moto's WSGI application wrapped by a small
middleware that counts every request by its operation (`X-Amz-Target`) and, for the read
operations, how many secrets each one asked for (one for GetSecretValue, the length of
`SecretIdList` for BatchGetSecretValue), and the bytes of every answer by operation.
`GET /__bench/counts` returns the counters and `POST /__bench/reset` zeroes them; neither
reaches moto. Counting here, not in the clients, means vaultsync and its peers are measured
by the same instrument.
"""

from __future__ import annotations

import argparse
import io
import json
import threading
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

READS = frozenset({"GetSecretValue", "BatchGetSecretValue"})

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
App = Callable[[Environ, StartResponse], Iterable[bytes]]


class Counting:
    def __init__(self, app: App) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()
        self._keys: Counter[str] = Counter()
        self._bytes: Counter[str] = Counter()
        self._distinct: set[str] = set()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/__bench/counts":
            with self._lock:
                body = json.dumps(
                    {
                        "calls": dict(self._calls),
                        "keys": dict(self._keys),
                        "bytes": dict(self._bytes),
                        "distinct": {"keys": len(self._distinct)},
                    }
                ).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        if path == "/__bench/reset":
            with self._lock:
                self._calls.clear()
                self._keys.clear()
                self._bytes.clear()
                self._distinct.clear()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [b"{}"]
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        operation = target.rsplit(".", 1)[-1] if target else f"{environ.get('REQUEST_METHOD')} {path}"
        if operation in READS:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            raw = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(raw)
            try:
                request = json.loads(raw or b"{}")
            except ValueError:
                request = {}
            if operation == "BatchGetSecretValue":
                ids = [str(i) for i in request.get("SecretIdList") or []]
            else:
                ids = [str(request.get("SecretId", ""))]
            with self._lock:
                self._calls[operation] += 1
                self._keys[operation] += len(ids)
                self._distinct.update(ids)
        else:
            with self._lock:
                self._calls[operation] += 1
        return self._counted(operation, self._app(environ, start_response))

    def _counted(self, operation: str, body: Iterable[bytes]) -> Iterable[bytes]:
        size = 0
        try:
            for chunk in body:
                size += len(chunk)
                yield chunk
        finally:
            with self._lock:
                self._bytes[operation] += size
            close = getattr(body, "close", None)
            if close is not None:
                close()


def serve(port: int) -> None:
    import logging
    import os

    os.environ.setdefault("MOTO_PORT", str(port))
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request is pure overhead
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        "127.0.0.1",
        port,
        Counting(app),
        threaded=True,
        use_reloader=False,
        request_handler=MotoRequestHandler,
    )


def counts(url: str) -> dict[str, dict[str, int]]:
    with urllib.request.urlopen(f"{url}/__bench/counts", timeout=10) as response:
        data: dict[str, dict[str, int]] = json.loads(response.read())
    return data


def reset(url: str) -> None:
    request = urllib.request.Request(f"{url}/__bench/reset", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=10):
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    serve(parser.parse_args().port)


if __name__ == "__main__":
    main()
