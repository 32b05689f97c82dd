"""A plain-HTTP reverse proxy in front of the real API server that misbehaves on cue.

The API server answers 429 only under load and never 503 or a reset connection on
demand, yet what the operator's client does then is the point of its retry policy.
So the tests put this proxy between `vaultsync.kube.Kube` and the real server: every
request is forwarded with the kubeconfig's (admin) credentials unless a queued fault
for its method says otherwise, and each request is recorded.

Faults, consumed in order per HTTP method:
- `Fault(status=429, retry_after="1")`: answer without forwarding;
- `Fault(reset=True)`: close the connection without an answer, not forwarded;
- `Fault(status=500, forward=True)` or `Fault(reset=True, forward=True)`: forward (the
  server acts on it), then answer 500 or reset instead: a reply lost after the work was done.
"""

from __future__ import annotations

import asyncio
import os
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import kopf
from aiohttp import web

HOP_BY_HOP = {"host", "content-length", "transfer-encoding", "connection", "authorization"}


@dataclass(frozen=True)
class Fault:
    status: int = 503
    retry_after: str | None = None
    reset: bool = False
    forward: bool = False


@dataclass
class FaultProxy:
    url: str
    faults: dict[str, deque[Fault]] = field(default_factory=lambda: defaultdict(deque))
    seen: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, outcome)

    def inject(self, method: str, *faults: Fault) -> None:
        self.faults[method].extend(faults)

    def sent(self, method: str, path_part: str = "") -> list[str]:
        """Outcomes of the requests with that method whose path contains `path_part`."""
        return [outcome for m, p, outcome in self.seen if m == method and path_part in p]


@asynccontextmanager
async def fault_proxy(kubeconfig: Path) -> AsyncIterator[FaultProxy]:
    """A running proxy to the kubeconfig's cluster; unauthenticated clients may use its url."""
    old = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(kubeconfig)
    try:
        info = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())
    finally:
        if old is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = old
    assert info is not None
    upstream = aiohttp.ClientSession(
        base_url=info.server.rstrip("/") + "/",
        connector=aiohttp.TCPConnector(ssl=info.as_ssl_context()),
        headers=info.as_http_headers(),
    )
    proxy = FaultProxy(url="")

    async def handle(request: web.Request) -> web.StreamResponse:
        queued = proxy.faults[request.method]
        fault = queued.popleft() if queued else None
        body = await request.read()
        if fault is not None and fault.reset and not fault.forward:
            proxy.seen.append((request.method, request.path, "reset"))
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError
        if fault is not None and not fault.forward:
            proxy.seen.append((request.method, request.path, str(fault.status)))
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            return web.json_response(
                {"kind": "Status", "code": fault.status}, status=fault.status, headers=headers
            )
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        async with upstream.request(
            request.method, request.path_qs.lstrip("/"), data=body or None, headers=headers
        ) as answer:
            payload = await answer.read()
            if fault is not None and fault.reset:
                proxy.seen.append((request.method, request.path, f"{answer.status}->reset"))
                assert request.transport is not None
                request.transport.abort()
                raise asyncio.CancelledError
            if fault is not None:
                proxy.seen.append((request.method, request.path, f"{answer.status}->{fault.status}"))
                return web.json_response({"kind": "Status", "code": fault.status}, status=fault.status)
            proxy.seen.append((request.method, request.path, str(answer.status)))
            kept = {k: v for k, v in answer.headers.items() if k.lower() in ("content-type", "retry-after")}
            return web.Response(body=payload, status=answer.status, headers=kept)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    proxy.url = f"http://127.0.0.1:{port}"
    try:
        yield proxy
    finally:
        await runner.cleanup()
        await upstream.close()
