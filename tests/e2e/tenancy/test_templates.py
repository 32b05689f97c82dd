"""A tenant's template cannot stall the operator, swell its memory, or stop anyone else's sync.

Attack: `spec.target.template` is code the operator runs. A CPU bomb (nested `range`
loops, 10^10 iterations) would stop the event loop every ExternalSecret syncs on; a
memory bomb (`center(800000000)`) would make the operator allocate gigabytes, and every
retry would do it again. Defence: templates render in a separate worker process under CPU,
memory, output and wall-clock limits (operator/vaultsync/render_worker.py); the tenant
gets `TemplateError` naming the key, the bystander keeps syncing, the operator's own
memory does not move, and retries back off.
"""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiException

from tests.e2e.conftest import fake_entry
from tests.e2e.tenancy.conftest import Bystander, TenancyOperators, Tenant

pytestmark = pytest.mark.e2e

PASSWORD = "tenant-password-Quokka-77"
CPU_BOMB = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
MEMORY_BOMB = "{{ password | center(800000000) }}"  # 800 MB, were it rendered in the operator
# The operator's peak RSS may grow by this much over its size before the attack; rendering
# the memory bomb in-process would add 800 MiB at least.
RSS_GROWTH_BOUND_MIB = 64
# Two bombs retried with backoff (5 s doubling, full jitter) for RETRY_WINDOW seconds.
RETRY_WINDOW_SECONDS = 20.0
MAX_RETRIES_IN_WINDOW = 10


def bomb_spec(key: str, source: str) -> dict[str, Any]:
    return {
        "storeRef": {"name": "fake"},
        "refreshInterval": "1h",
        "target": {"template": {"data": {key: source}}},
        "data": [{"secretKey": "password", "remoteRef": {"key": "db", "property": "password"}}],
    }


def time_limits(field: str, cpu_seconds: float) -> tuple[str, str]:
    """A CPU bomb's message: its CPU limit, or the wall-clock limit (10 times as long) when the
    machine is so busy that the worker, at nice 10, did not get its CPU time in that long."""
    return (
        f"{field}: exceeded the CPU time limit of {cpu_seconds:g} s",
        f"{field}: exceeded the time limit of {cpu_seconds * 10:g} s (wall clock)",
    )


def memory_mib(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak) of a process, from /proc/<pid>/status."""
    found: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(rest.split()[0]) / 1024
    return found


def render_workers(pid: int) -> list[int]:
    """The operator's render worker processes, found through /proc."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            if b"vaultsync.render_worker" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(int(child))
    return found


def template_error_syncs(metrics_url: str) -> float:
    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        text = response.read().decode()
    match = re.search(r'^vaultsync_syncs_total\{reason="TemplateError"\} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_cpu_and_memory_bombs_end_in_template_error_while_the_bystander_syncs(
    tenant: Tenant, bystander: Bystander, tenancy_operator: TenancyOperators
) -> None:
    tenant.vs.fake_store("fake", [fake_entry("db", {"password": PASSWORD})])
    with tenancy_operator() as operator:
        bystander.assert_still_syncing()
        before = memory_mib(operator.pid)

        started = time.monotonic()
        tenant.vs.external_secret("cpu-bomb", bomb_spec("out", CPU_BOMB))
        tenant.vs.external_secret("memory-bomb", bomb_spec("huge", MEMORY_BOMB))
        # While the bombs render and are retried, the bystander syncs as usual.
        bystander.assert_still_syncing(timeout=30)

        cpu = tenant.vs.wait_reason("cpu-bomb", "TemplateError", timeout=60)
        cpu_seconds = time.monotonic() - started
        memory = tenant.vs.wait_reason("memory-bomb", "TemplateError", timeout=60)
        memory_seconds = time.monotonic() - started
        assert cpu["status"] == "False"
        assert cpu["message"] in time_limits("spec.target.template.data.out", 1)
        assert memory["status"] == "False"
        assert memory["message"] == "spec.target.template.data.huge: exceeded the memory limit of 64 MiB"
        assert not tenant.vs.secret_exists("cpu-bomb")
        assert not tenant.vs.secret_exists("memory-bomb")

        # Retries back off like any other error, and the bystander still syncs meanwhile.
        counted, window_start = template_error_syncs(operator.metrics_url), time.monotonic()
        bystander.assert_still_syncing(timeout=30)
        time.sleep(max(0.0, RETRY_WINDOW_SECONDS - (time.monotonic() - window_start)))
        retries = template_error_syncs(operator.metrics_url) - counted

        after = memory_mib(operator.pid)
        workers = [memory_mib(worker)["VmRSS"] for worker in render_workers(operator.pid)]
        assert operator.returncode is None, "the operator exited during the attack"
        assert after["VmHWM"] - before["VmRSS"] < RSS_GROWTH_BOUND_MIB, (before, after)
        assert retries <= MAX_RETRIES_IN_WINDOW
        assert len(workers) <= 2  # --template-workers
        print(
            f"\ntime to TemplateError: cpu bomb {cpu_seconds:.1f} s, memory bomb {memory_seconds:.1f} s;"
            f" operator RSS before {before['VmRSS']:.0f} MiB, after {after['VmRSS']:.0f} MiB,"
            f" peak {after['VmHWM']:.0f} MiB; render workers {workers} MiB;"
            f" TemplateError syncs in the retry window: {retries:.0f}"
        )
    assert PASSWORD not in operator.logs()


def test_the_api_server_refuses_a_template_over_64_kib(tenant: Tenant) -> None:
    spec = bomb_spec("out", "x" * (64 * 1024 + 1))
    with pytest.raises(ApiException) as refused:
        tenant.vs.external_secret("too-big", spec)
    assert refused.value.status == 422
    assert "spec.target.template.data.out" in str(refused.value.body)


def test_the_limits_follow_the_operators_flags_and_environment(
    tenant: Tenant, tenancy_operator: TenancyOperators
) -> None:
    tenant.vs.fake_store("fake", [fake_entry("db", {"password": PASSWORD})])
    # 40 MB: over the output limit with the default memory limit, over a 32 MiB memory limit first.
    forty_megabytes = "{{ password | center(40000000) }}"
    with tenancy_operator("--template-cpu-seconds", "0.5", env={"VAULTSYNC_TEMPLATE_MEMORY_MIB": "32"}):
        tenant.vs.external_secret("cpu-bomb", bomb_spec("out", CPU_BOMB))
        tenant.vs.external_secret("memory-bomb", bomb_spec("huge", forty_megabytes))
        cpu = tenant.vs.wait_reason("cpu-bomb", "TemplateError", timeout=60)
        memory = tenant.vs.wait_reason("memory-bomb", "TemplateError", timeout=60)
    assert cpu["message"] in time_limits("spec.target.template.data.out", 0.5)
    assert memory["message"] == "spec.target.template.data.huge: exceeded the memory limit of 32 MiB"
