"""The process where tenants' templates run, so that one template can be stopped.

A template can ask for gigabytes (`'x' | center(10**9)`) or loop for hours (nested
`range` loops). In the operator's own process it would stall the event loop that every
other team's sync runs on, and a thread could neither be stopped nor kept from the
operator's memory. So templates render here, in a long-lived child process that the
operator reuses (`renderer.py`), under limits the kernel enforces:

- RLIMIT_AS: the address space may grow by `memory` bytes past what the worker uses once
  started; an allocation past it raises MemoryError, the render fails with a message and
  the worker exits so the next render starts with a clean heap;
- ITIMER_PROF: after the CPU budget of a render, SIGPROF interrupts the template with an
  exception, and the worker lives on;
- RLIMIT_CPU: one second later the kernel kills the worker (SIGXCPU), for a computation in
  C that never returns to the interpreter;
- the operator kills it after a wall-clock limit, and it runs at a lower priority (nice),
  so a busy worker takes CPU from no one but itself.

It starts with an empty environment (no cloud credentials to steal if the sandbox were
ever escaped) and its stderr goes nowhere, as a traceback could quote a value.

Protocol on stdin/stdout: frames of a 4-byte big-endian length and a JSON object (JSON,
not pickle: the operator must not run what a worker sends). The worker says
`{"ready": true}` once; each request gets `{"key": k}` before key `k` starts and then
`{"data": {...}}` or `{"error": message}` (with `"exit": true` if it is about to exit).
A request's optional `fields` names the spec field of keys that are not `template.data`
keys, and its `maps` lists the keys whose output is a YAML map (parsed here, under the
limits), answered as an object instead of a string.
"""

from __future__ import annotations

import json
import math
import os
import resource
import signal
import struct
import sys
from collections.abc import Callable
from types import FrameType
from typing import IO, Any

from vaultsync.sandbox import Limits, MemoryLimitError, RenderError, field, parse_map, render_text

HEADER = struct.Struct(">I")
NICENESS = 10
# The kernel's kill (RLIMIT_CPU) comes this many seconds after the SIGPROF of the budget.
CPU_KILL_GRACE_SECONDS = 1


def encode_frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    return HEADER.pack(len(body)) + body


class _CpuTimeExceeded(BaseException):
    """Raised by SIGPROF; a BaseException so no `except Exception` in Jinja2 swallows it."""


def _on_sigprof(signum: int, frame: FrameType | None) -> None:
    raise _CpuTimeExceeded


def confine(memory_bytes: int) -> None:
    """Lower priority, no core dumps, and at most `memory_bytes` more address space, for good."""
    os.nice(NICENESS)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    with open("/proc/self/statm") as statm:
        in_use = int(statm.read().split()[0]) * resource.getpagesize()
    ceiling = in_use + memory_bytes
    resource.setrlimit(resource.RLIMIT_AS, (ceiling, ceiling))


def limit_cpu(seconds: float) -> None:
    """The kernel kills this process once it has used `seconds` more CPU (plus the grace)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = math.ceil(usage.ru_utime + usage.ru_stime + seconds) + CPU_KILL_GRACE_SECONDS
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _send(out: IO[bytes], message: dict[str, Any]) -> None:
    # SIGPROF waits until the frame is whole: a frame cut in half would desynchronise the pipe.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGPROF})
    try:
        out.write(encode_frame(message))
        out.flush()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGPROF})


def _receive(inp: IO[bytes]) -> dict[str, Any] | None:
    header = inp.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (length,) = HEADER.unpack(header)
    message: dict[str, Any] = json.loads(inp.read(length))
    return message


def _render(request: dict[str, Any], started: Callable[[str], None]) -> dict[str, Any]:
    limits = Limits(
        cpu_seconds=float(request["cpuSeconds"]),
        memory_mib=int(request["memoryMiB"]),
        output_bytes=int(request["outputBytes"]),
    )
    current: list[str] = []
    fields: dict[str, str] = request.get("fields") or {}
    maps = set(request.get("maps") or ())

    def on_key(key: str) -> None:
        current[:] = [key]
        started(key)

    try:
        limit_cpu(limits.cpu_seconds)
        signal.setitimer(signal.ITIMER_PROF, limits.cpu_seconds)
        try:
            texts = render_text(
                (request["delimiters"][0], request["delimiters"][1]),
                request["data"],
                request["values"],
                limits,
                on_key=on_key,
                fields=fields,
            )
            data: dict[str, Any] = {
                k: parse_map(field(k, fields), v) if k in maps else v for k, v in texts.items()
            }
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
    except _CpuTimeExceeded:
        return {"error": f"{field(current[0] if current else None, fields)}: {limits.cpu_exceeded()}"}
    except MemoryLimitError as exc:
        return {"error": exc.message, "exit": True}
    except RenderError as exc:
        return {"error": exc.message}
    return {"data": data}


def serve(inp: IO[bytes], out: IO[bytes]) -> int:
    signal.signal(signal.SIGPROF, _on_sigprof)
    _send(out, {"ready": True})
    while (request := _receive(inp)) is not None:
        reply = _render(request, lambda key: _send(out, {"key": key}))
        _send(out, reply)
        if reply.get("exit"):
            return 0
    return 0


def main() -> int:
    confine(int(sys.argv[1]))
    return serve(sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    sys.exit(main())
