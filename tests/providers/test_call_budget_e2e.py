"""A store's call budget, end to end: the operator as a process, a real API server, and moto or
OpenBao behind a counting proxy (`recording_proxy.py`) that also answers "throttled" on demand.

- Over budget: refreshes are stretched, not failed: the proxy counts no more requests than the
  budget allows, every ExternalSecret stays Ready, and the store gets a Warning Event.
- Throttled: the budget in force halves and then climbs back to the store's limit.
- Within budget: a remote change still reaches its Secret within its refreshInterval + 10 %
  (with the margin a loaded test machine needs).
- A tenant's out-of-range `spec.callsPerMinute` is refused by the API server, naming the field.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import Vaultsync
from tests.env.kube import KubeApi
from tests.env.waiting import eventually
from tests.providers.backends.base import DetectingBackend, unique_key
from tests.providers.conftest import Backends
from tests.providers.recording_proxy import CannedReply, RecordingProxy
from tests.providers.test_operator_e2e import credential_secrets
from vaultsync.constants import GROUP, REASON_CALL_BUDGET, VERSION

pytestmark = pytest.mark.e2e

STORE = "budgeted"
THROTTLED = {
    "aws": CannedReply(
        400,
        json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode(),
        (("Content-Type", "application/x-amz-json-1.1"),),
    ),
    "vault": CannedReply(
        429, b'{"errors":["rate limit quota exceeded"]}', (("Content-Type", "application/json"),)
    ),
}


@pytest.fixture(params=["aws", "vault"])
def backend(request: pytest.FixtureRequest, backends: Backends) -> DetectingBackend:
    return backends.get(request.param)  # type: ignore[return-value]


@pytest.fixture
def proxy(backend: DetectingBackend) -> Iterator[RecordingProxy]:
    upstream = backend.endpoint if backend.name == "aws" else backend.server.url  # type: ignore[attr-defined]
    running = RecordingProxy(upstream)
    running.start()
    yield running
    running.close()


@pytest.fixture
def vs(kube_api: KubeApi, namespace: str, install_crds: list[str]) -> Vaultsync:
    return Vaultsync(kube_api, namespace)


def budgeted_store(vs: Vaultsync, backend: DetectingBackend, proxy: RecordingProxy, per_minute: int) -> None:
    config = dict(backend.provider_config())
    config["endpoint" if backend.name == "aws" else "server"] = proxy.url
    credential_secrets(vs, backend)  # type: ignore[arg-type]
    vs.apply_store(STORE, {"provider": {backend.name: config}, "callsPerMinute": per_minute})


def external_secrets(vs: Vaultsync, backend: DetectingBackend, count: int, refresh: str) -> list[str]:
    keys = []
    for i in range(count):
        key = unique_key("budget")
        backend.write(key, json.dumps({"password": f"first-{i}"}))
        vs.external_secret(
            f"es-{i}",
            {
                "storeRef": {"name": STORE},
                "refreshInterval": refresh,
                "data": [{"secretKey": "password", "remoteRef": {"key": key, "property": "password"}}],
            },
        )
        keys.append(key)
    return keys


def budget_in_force(operator: Any, store: str) -> float:
    with urllib.request.urlopen(operator.metrics_url, timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "vaultsync_store_calls_per_minute_budget"
                and sample.labels.get("store") == store
            ):
                return float(sample.value)
    return 0.0


def all_ready(vs: Vaultsync, count: int) -> None:
    for i in range(count):
        assert vs.ready(f"es-{i}").get("status") == "True", vs.ready(f"es-{i}")


def test_over_budget_refreshes_are_stretched_not_failed_and_the_store_is_warned(
    vs: Vaultsync,
    backend: DetectingBackend,
    proxy: RecordingProxy,
    namespace: str,
    run_operator: Callable[..., Any],
) -> None:
    # Four keys refreshed every second would take well over 100 requests a minute.
    budgeted_store(vs, backend, proxy, per_minute=12)
    with run_operator(namespace, "--namespace", namespace):
        external_secrets(vs, backend, 4, "1s")
        for i in range(4):
            vs.wait_data(f"es-{i}", {"password": f"first-{i}"}, timeout=120)
        proxy.reset()
        started = time.monotonic()
        time.sleep(30)
        made, elapsed = proxy.requests(), time.monotonic() - started
        all_ready(vs, 4)  # stretched, never failed
        # 12 a minute plus the burst (2) and one batch of debt (4 reads at most)
        assert made <= 12 * elapsed / 60 + 2 + 4, f"{made} requests in {elapsed:.0f}s"
        assert made > 0

        def warned() -> None:
            reasons = [e.reason for e in vs.events(STORE)]
            assert REASON_CALL_BUDGET in reasons, reasons

        eventually(warned, what="a Warning Event on the store", timeout=60)


def test_throttling_halves_the_budget_and_it_recovers(
    vs: Vaultsync,
    backend: DetectingBackend,
    proxy: RecordingProxy,
    namespace: str,
    run_operator: Callable[..., Any],
) -> None:
    store = f"SecretStore/{namespace}/{STORE}"
    budgeted_store(vs, backend, proxy, per_minute=600)
    with run_operator(namespace, "--namespace", namespace) as operator:
        external_secrets(vs, backend, 2, "1s")
        vs.wait_data("es-0", {"password": "first-0"}, timeout=120)
        assert budget_in_force(operator, store) == 600
        proxy.refuse_next(3, THROTTLED[backend.name])

        def shrunk() -> None:
            assert 0 < budget_in_force(operator, store) < 600

        eventually(shrunk, what="the budget to shrink after throttling", timeout=60)

        def recovered() -> None:
            assert budget_in_force(operator, store) == 600

        eventually(recovered, what="the budget to climb back to the limit", timeout=240)
        eventually(lambda: all_ready(vs, 2), what="every ExternalSecret Ready again", timeout=60)


def test_within_budget_a_change_reaches_its_secret_within_its_refresh_interval(
    vs: Vaultsync,
    backend: DetectingBackend,
    proxy: RecordingProxy,
    namespace: str,
    run_operator: Callable[..., Any],
) -> None:
    refresh = 10.0
    budgeted_store(vs, backend, proxy, per_minute=60)  # 2 keys every 10 s need at most 24
    with run_operator(namespace, "--namespace", namespace):
        keys = external_secrets(vs, backend, 2, f"{refresh:.0f}s")
        vs.wait_data("es-1", {"password": "first-1"}, timeout=120)
        backend.write(keys[1], json.dumps({"password": "second"}))
        written = time.monotonic()
        vs.wait_data("es-1", {"password": "second"}, timeout=refresh * 1.1 + 15)
        assert time.monotonic() - written <= refresh * 1.1 + 15  # the margin: a loaded machine


@pytest.mark.parametrize("value", [0, 100_001, "60"])
def test_a_tenant_calls_per_minute_out_of_range_is_refused_naming_the_field(
    vs: Vaultsync, value: object
) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SecretStore",
        "metadata": {"name": "greedy"},
        "spec": {"provider": {"fake": {}}, "callsPerMinute": value},
    }
    with pytest.raises(ApiException) as info:
        vs.api.custom.create_namespaced_custom_object(GROUP, VERSION, vs.namespace, "secretstores", body)
    assert info.value.status == 422
    assert "spec.callsPerMinute" in str(info.value.body)
