"""An HTTP layer in front of a vault endpoint that answers 429 or 5xx on cue.

Toxiproxy works on TCP and has no toxic that answers with an HTTP status, yet a throttling
(429) or failing (500/502/503) store is what an operator meets most. This small reverse
proxy sits between the operator and Toxiproxy: while `status` is set it answers every
request itself with that status (and `Retry-After: 1` for 429), without forwarding;
otherwise it forwards the request unchanged and streams the answer back. It runs on its
own thread and event loop and counts what it answered.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import aiohttp
from aiohttp import web

# Host is kept: AWS signs it (SigV4), and moto checks the signature.
HOP_BY_HOP = {"content-length", "transfer-encoding", "connection"}


class FaultLayer:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.status: int | None = None
        self.answered: Counter[str] = Counter()
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=20)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=20)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def _stop(self) -> None:
        assert self._runner is not None and self._session is not None
        await self._runner.cleanup()
        await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        status = self.status
        if status is not None:
            self.answered[str(status)] += 1
            headers = {"Retry-After": "1"} if status == 429 else {}
            return web.json_response(
                {"errors": ["injected by the chaos suite"]}, status=status, headers=headers
            )
        assert self._session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        try:
            async with self._session.request(
                request.method, self.upstream + request.path_qs, data=body or None, headers=headers
            ) as answer:
                payload = await answer.read()
                kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
                self.answered["forwarded"] += 1
                return web.Response(body=payload, status=answer.status, headers=kept)
        except (TimeoutError, aiohttp.ClientError):
            # The endpoint behind (Toxiproxy) is down or reset the connection: so do we.
            self.answered["upstream-failed"] += 1
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError from None
