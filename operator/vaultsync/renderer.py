"""Templates render in worker processes, never on the operator's event loop.

Each ExternalSecret with a template is one request to a small pool of long-lived render
workers (`render_worker.py`, which says what limits them and why a process). Waiting for
a worker is asynchronous, so a template that runs into its limits costs the operator
nothing but one worker for at most the wall-clock limit; ExternalSecrets without a
template never come here.

Fairness: a namespace has at most one render in flight, so with two workers (the
default) one tenant's bombs leave the other worker to everyone else; and a render waits
for its turn at most the wall-clock limit, then is retried with backoff, so a tenant with
many bombs cannot hold the scheduler's workers either. Workers start on first use (a
cluster without templates pays nothing) and are replaced when one dies or is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vaultsync.errors import RendererUnavailable, TemplateError
from vaultsync.models import TemplateSpec
from vaultsync.render_worker import HEADER, encode_frame
from vaultsync.sandbox import TEMPLATE_FIELD, Limits, RenderError, check_shape
from vaultsync.sandbox import field as template_field
from vaultsync.templatefrom import Sources

WORKER_START_SECONDS = 30.0
_PACKAGE_ROOT = Path(__file__).resolve().parents[1]
_EXIT_WAIT_SECONDS = 1.0
_MIB = 1024 * 1024


class _BrokenWorker(Exception):
    """The worker sent something that is not a frame of the protocol, or nothing at all."""


class _Worker:
    def __init__(self, process: asyncio.subprocess.Process, max_frame: int) -> None:
        self._process = process
        self._max_frame = max_frame
        self.alive = True

    @classmethod
    async def start(cls, limits: Limits) -> _Worker:
        # Nothing of the operator's environment (credentials), but its own copy of vaultsync.
        env = {"PYTHONPATH": str(_PACKAGE_ROOT)}
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "vaultsync.render_worker",
                str(limits.memory_mib * _MIB),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                env=env,
                cwd="/",
            )
        except OSError:
            raise RendererUnavailable(f"{TEMPLATE_FIELD}: the template renderer did not start") from None
        # JSON escapes a character in at most 6 bytes; the rest is keys and framing.
        worker = cls(process, 6 * limits.output_bytes + 64 * 1024)
        try:
            async with asyncio.timeout(WORKER_START_SECONDS):
                ready = await worker._receive()
            if ready != {"ready": True}:
                raise _BrokenWorker
        except (TimeoutError, _BrokenWorker):
            await worker.stop()
            raise RendererUnavailable(f"{TEMPLATE_FIELD}: the template renderer did not start") from None
        return worker

    async def render(
        self, request: Mapping[str, Any], limits: Limits, fields: Mapping[str, str]
    ) -> dict[str, Any]:
        """The worker's final reply; a death or a timeout is a TemplateError naming the key."""
        assert self._process.stdin is not None
        key: str | None = next(iter(request["data"]), None)  # the first, until the worker says
        try:
            async with asyncio.timeout(limits.wall_seconds):
                self._process.stdin.write(encode_frame(dict(request)))
                await self._process.stdin.drain()
                while "key" in (reply := await self._receive()):
                    key = str(reply["key"])
        except TimeoutError:
            await self.stop(kill=True)
            raise TemplateError(f"{template_field(key, fields)}: {limits.wall_exceeded()}") from None
        except (_BrokenWorker, ConnectionError):
            code = await self.stop()
            raise TemplateError(f"{template_field(key, fields)}: {_death(code, limits)}") from None
        except asyncio.CancelledError:  # its answer would be read as the next request's
            self.alive = False
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            raise
        if reply.get("exit"):
            await self.stop()
        return reply

    async def stop(self, kill: bool = False) -> int | None:
        """Ends the process (given a moment to end by itself unless `kill`); how it ended."""
        self.alive = False
        if not kill:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_EXIT_WAIT_SECONDS):
                    return await self._process.wait()
        with contextlib.suppress(ProcessLookupError):
            self._process.kill()
        return await self._process.wait()

    async def _receive(self) -> dict[str, Any]:
        assert self._process.stdout is not None
        try:
            (length,) = HEADER.unpack(await self._process.stdout.readexactly(HEADER.size))
            if length > self._max_frame:
                raise _BrokenWorker
            message = json.loads(await self._process.stdout.readexactly(length))
        except (asyncio.IncompleteReadError, ValueError):
            raise _BrokenWorker from None
        if not isinstance(message, dict):
            raise _BrokenWorker
        return message


def _death(code: int | None, limits: Limits) -> str:
    if code == -signal.SIGXCPU:
        return limits.cpu_exceeded()
    if code is not None and code < 0:
        return f"the render worker was killed by {signal.Signals(-code).name}"
    return f"the render worker exited with code {code}"


@dataclass
class _Turn:
    """One namespace's right to a render in flight, and how many are waiting for it."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class TemplateRenderer:
    def __init__(self, limits: Limits, workers: int) -> None:
        self.limits = limits
        self._free = asyncio.Semaphore(workers)
        self._idle: list[_Worker] = []
        self._running: set[_Worker] = set()
        self._turns: dict[str, _Turn] = {}

    async def render(
        self, namespace: str, template: TemplateSpec, values: Mapping[str, bytes]
    ) -> dict[str, bytes]:
        """The Secret data: each `template.data` entry rendered over the fetched keys."""
        rendered = await self.render_sources(
            namespace, template.delimiters, Sources(dict(template.data)), values
        )
        return {k: v for k, v in rendered.items() if isinstance(v, bytes)}

    async def render_sources(
        self, namespace: str, delimiters: tuple[str, str], sources: Sources, values: Mapping[str, bytes]
    ) -> dict[str, bytes | dict[str, str]]:
        """Each template of `sources` rendered over the fetched keys: bytes, or for the ids of
        `sources.maps` the YAML map it produced (`templatefrom.assemble` joins them)."""
        try:
            check_shape(sources.texts, sources.fields)
        except RenderError as exc:
            raise TemplateError(exc.message) from None
        request = {
            "delimiters": list(delimiters),
            "data": dict(sources.texts),
            "fields": dict(sources.fields),
            "maps": sorted(sources.maps),
            "values": {k: v.decode("utf-8", errors="surrogateescape") for k, v in values.items()},
            "cpuSeconds": self.limits.cpu_seconds,
            "memoryMiB": self.limits.memory_mib,
            "outputBytes": self.limits.output_bytes,
        }
        async with self._worker(namespace) as worker:
            reply = await worker.render(request, self.limits, sources.fields)
        if "error" in reply:
            raise TemplateError(str(reply["error"]))
        return _checked(reply.get("data"), sources, self.limits)

    async def close(self) -> None:
        workers = [*self._idle, *self._running]
        self._idle.clear()
        for worker in workers:
            await worker.stop(kill=True)

    @contextlib.asynccontextmanager
    async def _worker(self, namespace: str) -> AsyncIterator[_Worker]:
        turn = self._turns.setdefault(namespace, _Turn())
        turn.users += 1
        try:
            await self._wait(turn.lock.acquire(), f"earlier templates of namespace {namespace}")
            try:
                await self._wait(self._free.acquire(), "templates of other namespaces")
                try:
                    worker = self._idle.pop() if self._idle else await _Worker.start(self.limits)
                    self._running.add(worker)
                    try:
                        yield worker
                    finally:
                        self._running.discard(worker)
                        if worker.alive:
                            self._idle.append(worker)
                finally:
                    self._free.release()
            finally:
                turn.lock.release()
        finally:
            turn.users -= 1
            if turn.users == 0:
                del self._turns[namespace]

    async def _wait(self, acquire: Any, behind: str) -> None:
        try:
            async with asyncio.timeout(self.limits.wall_seconds):
                await acquire
        except TimeoutError:
            raise RendererUnavailable(
                f"{TEMPLATE_FIELD}: not rendered within {self.limits.wall_seconds:g} s, "
                f"the renderer is busy with {behind}"
            ) from None


def _checked(data: Any, sources: Sources, limits: Limits) -> dict[str, bytes | dict[str, str]]:
    """The worker's answer, trusted no further than its shape and size."""
    if not isinstance(data, dict) or set(data) != set(sources.texts):
        raise TemplateError(f"{TEMPLATE_FIELD}: the render worker gave a malformed answer")
    rendered: dict[str, bytes | dict[str, str]] = {}
    size = 0
    for k, v in data.items():
        if k in sources.maps:
            if not isinstance(v, dict):
                raise TemplateError(f"{TEMPLATE_FIELD}: the render worker gave a malformed answer")
            pairs = {str(name): str(text) for name, text in v.items()}
            size += sum(len(n) + len(t) for n, t in pairs.items())
            rendered[k] = pairs
            continue
        try:
            rendered[k] = text = str(v).encode("utf-8", errors="surrogateescape")
        except UnicodeEncodeError:  # a lone surrogate the template wrote ("\ud800")
            raise TemplateError(
                f"{template_field(k, sources.fields)}: the rendered text is not valid Unicode "
                "(a lone surrogate), so it cannot be written as UTF-8"
            ) from None
        size += len(text)
    if size > limits.output_bytes:
        raise TemplateError(f"{TEMPLATE_FIELD}: {limits.output_exceeded()}")
    return {k: rendered[k] for k in sources.texts}
