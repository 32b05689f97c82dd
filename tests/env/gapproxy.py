"""A streaming reverse proxy in front of the real API server that opens a watch gap on cue.

After a long disconnect the API server answers a watch resumed from an old resourceVersion
with `410 Gone`, and the client (kopf) lists again: whatever was deleted meanwhile is then
simply missing from the list, and no DELETED event is ever sent for it. Waiting for the
real server's watch cache to expire takes minutes, so the tests make the same sequence:

- `with proxy.gap("externalsecrets"):` cuts the open watches of that resource and holds
  every new request for it, so the operator sees nothing while the test deletes objects
  with its own (direct) client;
- when the block ends, the held watch requests (resumed from the old resourceVersion) get
  the API server's own 410 event, and the lists that follow go to the real server.

Everything else is forwarded unchanged with the kubeconfig's (admin) credentials, and
responses are streamed, so watches work through it. It runs on its own thread and loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import kopf
import yaml
from aiohttp import web

HELD_WATCH_TIMEOUT_SECONDS = 30.0
HOP_BY_HOP = {"host", "content-length", "transfer-encoding", "connection", "authorization"}
GONE = {
    "type": "ERROR",
    "object": {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "too old resource version",
        "reason": "Expired",
        "code": 410,
    },
}


class GapProxy:
    def __init__(self, kubeconfig: Path) -> None:
        self._kubeconfig = kubeconfig
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.url = ""
        self._gapped: str | None = None
        self._closed: asyncio.Event | None = None  # set when the current gap ends
        self._watches: dict[int, tuple[str, web.Request, aiohttp.ClientResponse]] = {}
        self._runner: web.AppRunner | None = None
        self._upstream: aiohttp.ClientSession | None = None
        self._held_watches = 0
        self.requests: list[str] = []  # method and path of each request, as received
        self.gone_sent = 0  # 410s answered: proof the gap made the operator list again

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def write_kubeconfig(self, path: Path) -> Path:
        """A kubeconfig for clients of the proxy (it adds the real credentials itself)."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "proxy", "cluster": {"server": self.url}}],
            "users": [{"name": "proxy", "user": {"token": "unused-the-proxy-authenticates"}}],
            "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "proxy"}}],
            "current-context": "proxy",
        }
        path.write_text(yaml.safe_dump(config))
        return path

    @contextmanager
    def gap(self, resource: str) -> Iterator[None]:
        asyncio.run_coroutine_threadsafe(self._open_gap(resource), self._loop).result(10)
        try:
            yield
            # The gap ends once the client tried to resume its watch into it (it may wait a
            # backoff after the cut): that resumed watch is the one answered 410.
            deadline = time.monotonic() + HELD_WATCH_TIMEOUT_SECONDS
            while self._held_watches == 0 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert self._held_watches, "no watch was resumed during the gap"
        finally:
            asyncio.run_coroutine_threadsafe(self._close_gap(), self._loop).result(10)

    async def _open_gap(self, resource: str) -> None:
        self._gapped, self._closed, self._held_watches = resource, asyncio.Event(), 0
        for path, request, answer in list(self._watches.values()):
            if f"/{resource}" in path:
                answer.close()
                if request.transport is not None:
                    request.transport.abort()

    async def _close_gap(self) -> None:
        assert self._closed is not None
        self._gapped = None
        self._closed.set()

    async def _serve(self) -> None:
        old = os.environ.get("KUBECONFIG")
        os.environ["KUBECONFIG"] = str(self._kubeconfig)
        try:
            info = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())
        finally:
            if old is None:
                os.environ.pop("KUBECONFIG", None)
            else:
                os.environ["KUBECONFIG"] = old
        assert info is not None
        self._upstream = aiohttp.ClientSession(
            base_url=info.server.rstrip("/") + "/",
            connector=aiohttp.TCPConnector(ssl=info.as_ssl_context()),
            headers=info.as_http_headers(),
            timeout=aiohttp.ClientTimeout(total=None),
        )
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def _close(self) -> None:
        for _, request, answer in list(self._watches.values()):
            answer.close()
            if request.transport is not None:
                request.transport.abort()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._upstream is not None:
            await self._upstream.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        watch = request.query.get("watch") == "true"
        self.requests.append(f"{request.method} {request.path_qs}")
        if self._gapped is not None and f"/{self._gapped}" in request.path:
            assert self._closed is not None
            self._held_watches += watch
            await self._closed.wait()
            if watch:  # resumed from a resourceVersion the gap made too old
                self.gone_sent += 1
                return await self._gone(request)
        assert self._upstream is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = await request.read()
        async with self._upstream.request(
            request.method, request.path_qs.lstrip("/"), data=body or None, headers=headers
        ) as answer:
            kept = {k: v for k, v in answer.headers.items() if k.lower() in ("content-type", "retry-after")}
            response = web.StreamResponse(status=answer.status, headers=kept)
            await response.prepare(request)
            if watch:
                self._watches[id(request)] = (request.path, request, answer)
            try:
                async for chunk in answer.content.iter_any():
                    await response.write(chunk)
            except (aiohttp.ClientError, ConnectionError):
                pass
            finally:
                self._watches.pop(id(request), None)
            await response.write_eof()
            return response

    async def _gone(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(json.dumps(GONE).encode() + b"\n")
        await response.write_eof()
        return response
