"""A template over its limits ends in a TemplateError naming the key, soon, and stalls no one else.

Every abuse class renders in a real render worker process, as in the operator: what is
proven is the worker's limits (CPU time, memory, output size, wall clock), the sandbox's
cheap first checks, and the pool that keeps the event loop and other namespaces free.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Coroutine, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from vaultsync.config import Config, add_run_arguments, from_arguments
from vaultsync.constants import TEMPLATE_MAX_KEYS, TEMPLATE_MAX_SOURCE_BYTES, Reason
from vaultsync.errors import TemplateError
from vaultsync.models import TemplateSpec
from vaultsync.renderer import TemplateRenderer
from vaultsync.sandbox import Limits, render_text

SECRET = "s3cr3t-Zebra-Quokka-42"
VALUES = {"x": SECRET.encode(), "y": b"a" * 1000}
FIELD = "spec.target.template.data.out: "
# However a template misbehaves, its error comes within the wall-clock limit (plus a worker
# start, slow on a loaded machine).
BOUND_SECONDS = Limits().wall_seconds + 5
CRD = Path(__file__).resolve().parents[2] / "crds" / "externalsecrets.yaml"
T = TypeVar("T")

# A CPU bomb ends at its CPU limit, or at the wall-clock limit when the machine is so busy
# that the worker (at nice 10) did not get its second of CPU in ten: either is a time limit.
CPU = ("exceeded the CPU time limit of 1 s", "exceeded the time limit of 10 s (wall clock)")
MEMORY = "exceeded the memory limit of 64 MiB"
OUTPUT = "exceeded the output size limit of 1 MiB"
LOOPS = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
DOUBLING = (
    "{% macro f(s, n) %}{% if n %}{{ f(s ~ s, n - 1) }}{% else %}{{ s }}{% endif %}{% endmacro %}"
    "{{ f(x, 40) }}"
)

ABUSES = [
    # Constant folding: Jinja2 would compute these while compiling, in from_string.
    pytest.param("{{ 'a' * 10**10 }}", "'*' would repeat a value past the output size limit", id="folded-*"),
    pytest.param("{{ 'x' | center(1000000000) }}", MEMORY, id="folded-center"),
    pytest.param("{{ 10 ** (10 ** 8) }}", "'**' would build a number over 16384 bits", id="**"),
    pytest.param("{% set n = 2 ** 10000 %}{{ n * n }}", "'*' would build a number over", id="int-*"),
    pytest.param("{{ [x] * 100000000 }}", "'*' would repeat a value", id="list-*"),
    pytest.param("{{ range(10**9) | list }}", "OverflowError while rendering", id="range"),
    pytest.param(LOOPS, CPU, id="nested-for-cpu"),
    pytest.param(
        LOOPS.replace("{% endfor %}{% endfor %}", "{{ x ~ b }}{% endfor %}{% endfor %}"),
        OUTPUT,
        id="nested-for-~",
    ),
    pytest.param("{{ range(100000) | map('center', 100000) | join }}", MEMORY, id="join"),
    pytest.param(DOUBLING, MEMORY, id="macro-doubling"),
    pytest.param(
        "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
        "RecursionError while rendering",
        id="macro-recursion",
    ),
    pytest.param("{{ x | center(1000000000) }}", MEMORY, id="center"),
    pytest.param("{{ (x ~ '\n' ~ x) | indent(1000000000) }}", MEMORY, id="indent"),
    pytest.param("{{ x | center(1000000) | wordwrap(1) }}", CPU, id="wordwrap"),
    pytest.param("{{ '%0999999999d' | format(1) }}", MEMORY, id="format"),
    pytest.param("{{ '{:>999999999}'.format(x) }}", MEMORY, id="str.format"),
    pytest.param("{{ y | replace('a', y) | replace('a', y) | replace('a', y) }}", MEMORY, id="replace"),
    pytest.param("{{ x | center(30000000) | b64encode | b64encode | b64encode }}", MEMORY, id="b64encode"),
]

NORMAL = [
    "postgresql://{{ x }}:{{ y | length }}@db:5432/shop",
    "{% for i in range(3) %}{{ x }}-{{ i }}\n{% endfor %}",
    "{{ x | b64encode }} {{ 2 ** 100 }} {{ 'ab' * 3 }} {{ [1, 2] * 2 }} {{ 1.5 ** 2 }}",
    "{% macro up(s) %}{{ s | upper }}{% endmacro %}{{ up(x) }}{{ '%05d' | format(42) }}",
]


def says(error: BaseException, expected: str | tuple[str, ...]) -> bool:
    alternatives = (expected,) if isinstance(expected, str) else expected
    return any(text in str(error) for text in alternatives)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


@pytest.fixture
def renderer() -> Iterator[TemplateRenderer]:
    """A pool of two workers, like the operator's default; closed in the loop that used it."""
    yield TemplateRenderer(Limits(), workers=2)


def one(source: str) -> TemplateSpec:
    return TemplateSpec(data={"out": source})


async def render_closing(renderer: TemplateRenderer, *calls: tuple[str, TemplateSpec]) -> list[Any]:
    try:
        return await asyncio.gather(
            *(renderer.render(ns, spec, VALUES) for ns, spec in calls), return_exceptions=True
        )
    finally:
        await renderer.close()


def worker_pids() -> list[int]:
    """This process's render workers, found through /proc."""
    pids: list[int] = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        for pid in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"vaultsync.render_worker" in cmdline:
                pids.append(int(pid))
    return pids


@pytest.mark.parametrize(("source", "expected"), ABUSES)
def test_an_abusive_template_ends_in_a_template_error_naming_its_key_in_bounded_time(
    renderer: TemplateRenderer, source: str, expected: str | tuple[str, ...]
) -> None:
    started = time.monotonic()
    [result] = run(render_closing(renderer, ("tenant", one(source))))
    elapsed = time.monotonic() - started
    assert isinstance(result, TemplateError), result
    assert result.reason is Reason.TEMPLATE_ERROR
    assert str(result).startswith(FIELD) and says(result, expected), str(result)
    assert SECRET not in str(result)
    assert elapsed < BOUND_SECONDS


@pytest.mark.parametrize("source", NORMAL)
def test_a_normal_template_renders_in_the_worker_exactly_as_in_process(
    renderer: TemplateRenderer, source: str
) -> None:
    [result] = run(render_closing(renderer, ("tenant", one(source))))
    text = {k: v.decode() for k, v in VALUES.items()}
    assert result == {"out": render_text(("{{", "}}"), {"out": source}, text, Limits())["out"].encode()}


def test_the_event_loop_keeps_turning_while_a_cpu_bomb_renders(renderer: TemplateRenderer) -> None:
    async def scenario() -> tuple[Any, float]:
        gaps: list[float] = []

        async def tick() -> None:
            last = time.monotonic()
            while True:
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        ticker = asyncio.create_task(tick())
        try:
            [result] = await render_closing(renderer, ("tenant", one(LOOPS)))
        finally:
            ticker.cancel()
        return result, max(gaps)

    result, longest_gap = run(scenario())
    assert isinstance(result, TemplateError) and says(result, CPU)
    assert longest_gap < 0.8  # a blocked loop would stall for the bomb's whole second


def test_another_namespace_renders_while_one_namespace_runs_several_bombs(renderer: TemplateRenderer) -> None:
    async def scenario() -> tuple[list[Any], float]:
        # Both workers started, so the bystander does not pay for a start.
        await asyncio.gather(renderer.render("warm-a", one("a"), {}), renderer.render("warm-b", one("b"), {}))
        bombs = [asyncio.create_task(renderer.render("tenant", one(LOOPS), VALUES)) for _ in range(3)]
        await asyncio.sleep(0.2)
        started = time.monotonic()
        bystander = await renderer.render("bystander", one("{{ x }}"), VALUES)
        took = time.monotonic() - started
        try:
            results = await asyncio.gather(*bombs, return_exceptions=True)
        finally:
            await renderer.close()
        return [bystander, *results], took

    (bystander, *bombs), took = run(scenario())
    assert bystander == {"out": SECRET.encode()}
    assert took < 0.9  # behind any one bomb it would wait a second of CPU
    assert all(isinstance(b, TemplateError) and says(b, CPU) for b in bombs), bombs


def test_a_worker_that_hit_the_memory_limit_is_replaced(renderer: TemplateRenderer) -> None:
    async def scenario() -> list[Any]:
        try:
            first = await asyncio.gather(renderer.render("t", one(DOUBLING), VALUES), return_exceptions=True)
            return [*first, await renderer.render("t", one("{{ x }}"), VALUES)]
        finally:
            await renderer.close()

    bomb, after = run(scenario())
    assert isinstance(bomb, TemplateError) and MEMORY in str(bomb)
    assert after == {"out": SECRET.encode()}


def test_a_worker_that_stops_answering_is_killed_at_the_wall_clock_limit_and_replaced() -> None:
    renderer = TemplateRenderer(Limits(cpu_seconds=0.2), workers=1)

    async def scenario() -> tuple[Any, float, Any]:
        try:
            await renderer.render("t", one("warm"), {})
            [pid] = worker_pids()
            os.kill(pid, signal.SIGSTOP)  # no CPU used: only the wall clock can end this
            started = time.monotonic()
            [stuck] = await asyncio.gather(
                renderer.render("t", one("{{ x }}"), VALUES), return_exceptions=True
            )
            took = time.monotonic() - started
            return stuck, took, await renderer.render("t", one("{{ x }}"), VALUES)
        finally:
            await renderer.close()

    stuck, took, after = run(scenario())
    assert str(stuck) == f"{FIELD}exceeded the time limit of 2 s (wall clock)"
    assert 2 <= took < 6
    assert after == {"out": SECRET.encode()}


def test_a_worker_killed_for_cpu_time_reports_the_cpu_limit_and_the_key_it_was_on() -> None:
    # The kernel's SIGXCPU, as RLIMIT_CPU sends it for a computation stuck in C.
    renderer = TemplateRenderer(Limits(cpu_seconds=30), workers=1)
    spec = TemplateSpec(data={"first": "{{ x }}", "second": LOOPS})

    async def scenario() -> Any:
        try:
            await renderer.render("t", one("warm"), {})
            [pid] = worker_pids()
            task = asyncio.ensure_future(renderer.render("t", spec, VALUES))
            await asyncio.sleep(0.5)
            os.kill(pid, signal.SIGXCPU)
            [result] = await asyncio.gather(task, return_exceptions=True)
            return result
        finally:
            await renderer.close()

    result = run(scenario())
    assert str(result) == "spec.target.template.data.second: exceeded the CPU time limit of 30 s"


def test_rlimit_cpu_kills_a_computation_that_never_returns_to_the_interpreter() -> None:
    # No SIGPROF handler can run inside one C call; the kernel's limit still ends it.
    code = "from vaultsync.render_worker import limit_cpu; limit_cpu(1); 10 ** (10 ** 9)"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "-c", code], timeout=120, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert done.returncode == -signal.SIGXCPU
    # 1 s asked, rounded up to whole seconds, plus the grace second.
    assert after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime < 4


def test_the_worker_address_space_is_capped() -> None:
    code = (
        "from vaultsync.render_worker import confine; confine(64 * 2**20)\n"
        "try:\n    bytearray(256 * 2**20)\nexcept MemoryError:\n    raise SystemExit(3)\n"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=30, check=False).returncode == 3


def test_the_output_limit_counts_every_key_together(renderer: TemplateRenderer) -> None:
    half = "{{ 'a' * 600000 }}"
    [result] = run(render_closing(renderer, ("t", TemplateSpec(data={"a": half, "b": half}))))
    assert str(result) == f"spec.target.template.data.b: {OUTPUT}"


def test_a_template_over_the_source_size_limit_is_refused_before_it_is_compiled(
    renderer: TemplateRenderer,
) -> None:
    source = "a" * (TEMPLATE_MAX_SOURCE_BYTES + 1)
    [result] = run(render_closing(renderer, ("t", one(source))))
    assert str(result) == f"{FIELD}the template is 65537 bytes, over the limit of 65536"
    assert worker_pids() == []  # never reached a worker


def test_too_many_template_keys_are_refused(renderer: TemplateRenderer) -> None:
    spec = TemplateSpec(data={f"k{i}": "x" for i in range(TEMPLATE_MAX_KEYS + 1)})
    [result] = run(render_closing(renderer, ("t", spec)))
    assert str(result) == "spec.target.template.data: 257 keys, over the limit of 256"


def test_the_crd_caps_template_size_and_key_count_as_the_operator_does() -> None:
    crd = yaml.safe_load(CRD.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    data = spec["properties"]["target"]["properties"]["template"]["properties"]["data"]
    assert data["maxProperties"] == TEMPLATE_MAX_KEYS
    assert data["additionalProperties"]["maxLength"] == TEMPLATE_MAX_SOURCE_BYTES


def test_the_worker_holds_no_credentials_and_imports_no_more_than_it_needs(
    renderer: TemplateRenderer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "canary-" + SECRET)

    async def scenario() -> tuple[bytes, int]:
        try:
            await renderer.render("t", one("warm"), {})
            [pid] = worker_pids()
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            status = Path(f"/proc/{pid}/status").read_text()
            rss_kib = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
            return environ, rss_kib
        finally:
            await renderer.close()

    environ, rss_kib = run(scenario())
    assert SECRET.encode() not in environ
    assert set(dict(v.split(b"=", 1) for v in environ.split(b"\0") if v)) <= {b"PYTHONPATH"}
    assert rss_kib < 40 * 1024


def test_several_template_errors_in_a_row_leave_the_pool_usable(renderer: TemplateRenderer) -> None:
    bombs: Mapping[str, str] = {"cpu": LOOPS, "memory": DOUBLING, "syntax": "{{ x "}

    async def scenario() -> list[Any]:
        try:
            results = [
                *(
                    await asyncio.gather(
                        *(renderer.render("t", one(s), VALUES) for s in bombs.values()),
                        return_exceptions=True,
                    )
                )
            ]
            return [*results, await renderer.render("t", one("{{ x }}"), VALUES)]
        finally:
            await renderer.close()

    *errors, ok = run(scenario())
    assert all(isinstance(e, TemplateError) for e in errors)
    assert ok == {"out": SECRET.encode()}


def test_the_largest_template_allowed_renders_within_the_limits(renderer: TemplateRenderer) -> None:
    source = ("line {{ x }} and {% if x %}yes{% endif %}\n" * 1600)[:TEMPLATE_MAX_SOURCE_BYTES]
    [result] = run(render_closing(renderer, ("t", one(source))))
    assert isinstance(result, dict), result
    assert result["out"].count(SECRET.encode()) == source.count("{{ x }}") > 1500


def test_a_cancelled_render_does_not_leave_its_answer_for_the_next_one(renderer: TemplateRenderer) -> None:
    async def scenario() -> Any:
        try:
            task = asyncio.ensure_future(renderer.render("t", one(LOOPS), VALUES))
            await asyncio.sleep(0.3)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return await renderer.render("t", one("{{ x }}"), VALUES)
        finally:
            await renderer.close()

    assert run(scenario()) == {"out": SECRET.encode()}


def test_the_limits_are_set_by_flags_with_environment_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    def parse(*argv: str) -> Config:
        parser = argparse.ArgumentParser()
        add_run_arguments(parser)
        return from_arguments(parser.parse_args(argv))

    defaults = parse()
    assert (defaults.template_cpu_seconds, defaults.template_memory_mib) == (1.0, 64)
    assert (defaults.template_output_bytes, defaults.template_workers) == (1024 * 1024, 2)
    monkeypatch.setenv("VAULTSYNC_TEMPLATE_CPU_SECONDS", "2.5")
    monkeypatch.setenv("VAULTSYNC_TEMPLATE_WORKERS", "3")
    from_env = parse("--template-memory-mib", "32", "--template-output-bytes", "4096")
    assert from_env.template_cpu_seconds == 2.5 and from_env.template_workers == 3
    assert from_env.template_memory_mib == 32 and from_env.template_output_bytes == 4096
    with pytest.raises(SystemExit):
        parse("--template-cpu-seconds", "0")
