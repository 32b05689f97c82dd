"""The operator's Kubernetes client under throttling, server errors and broken connections.

A fault-injecting proxy (tests/env/faultproxy.py) sits between `vaultsync.kube.Kube` and
the real API server: requests the proxy lets through are answered by the real server.
What is proven, each against the retry policy in docs/reliability.md: 429 is waited out
(Retry-After honoured) for every verb; 5xx and reset connections are resent for
idempotent requests and never for an Event's POST; a create whose answer was lost is
resent into the server's own 409 and the caller reads the object; the number of sends,
the Retry-After cap and the time budget bound every request.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import kopf
import pytest
from kubernetes import client
from prometheus_client import REGISTRY

from tests.env.faultproxy import Fault, FaultProxy, fault_proxy
from tests.env.kube import Cluster, KubeApi
from vaultsync import constants as c
from vaultsync.errors import KubeConflict, KubeError
from vaultsync.events import EventRecorder
from vaultsync.hmackey import ensure_hmac_key
from vaultsync.kube import Kube, ObjectRef
from vaultsync.kuberetry import RetryPolicy

pytestmark = pytest.mark.e2e

T = TypeVar("T")
FAST = RetryPolicy(attempts=4, base_delay=0.05, max_delay=0.2, max_retry_after=1.5, budget=5.0)


def _with_proxy(
    cluster: Cluster, scenario: Callable[[Kube, FaultProxy], Awaitable[T]], policy: RetryPolicy = FAST
) -> T:
    async def run() -> T:
        async with fault_proxy(cluster.kubeconfig) as proxy:
            kube = Kube(kopf.ConnectionInfo(server=proxy.url), retry=policy)
            try:
                return await scenario(kube, proxy)
            finally:
                await kube.close()

    return asyncio.run(run())


def _plain_secret(kube_api: KubeApi, namespace: str, name: str = "plain") -> None:
    kube_api.core.create_namespaced_secret(
        namespace, client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data={"k": "v"})
    )


def _event_ref(namespace: str) -> ObjectRef:
    return ObjectRef("v1", "Namespace", None, namespace, "0")


def _events_dropped() -> float:
    return REGISTRY.get_sample_value("vaultsync_events_dropped_total", {"type": "Normal"}) or 0.0


def _secret_body(name: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": {"k": "dg=="}}


def test_429_is_waited_out_for_every_verb_honouring_retry_after(
    cluster: Cluster, kube_api: KubeApi, namespace: str
) -> None:
    _plain_secret(kube_api, namespace)

    async def scenario(kube: Kube, proxy: FaultProxy) -> float:
        proxy.inject("GET", Fault(429, retry_after="1"), Fault(429, retry_after="0"))
        proxy.inject("POST", Fault(429, retry_after="0"))
        started = time.monotonic()
        assert (await kube.read_secret(namespace, "plain"))["metadata"]["name"] == "plain"
        waited = time.monotonic() - started
        await EventRecorder(kube).post_event(_event_ref(namespace), "Normal", "Probe", "a probe")
        assert proxy.sent("GET") == ["429", "429", "200"]
        assert proxy.sent("POST", "/events") == ["429", "201"]  # a 429 was never processed
        return waited

    waited = _with_proxy(cluster, scenario)
    assert 1.0 <= waited < 3.0, waited  # the server's Retry-After: 1, then 0


def test_5xx_and_resets_are_resent_for_idempotent_requests_only(
    cluster: Cluster, kube_api: KubeApi, namespace: str
) -> None:
    _plain_secret(kube_api, namespace)

    async def scenario(kube: Kube, proxy: FaultProxy) -> None:
        proxy.inject("GET", Fault(503), Fault(reset=True), Fault(500))
        assert (await kube.read_secret(namespace, "plain"))["metadata"]["name"] == "plain"
        assert proxy.sent("GET") == ["503", "reset", "500", "200"]

        existing = await kube.read_secret(namespace, "plain")
        existing["data"] = {"k": base64.b64encode(b"new").decode()}
        proxy.inject("PUT", Fault(502), Fault(reset=True))
        await kube.replace_secret(namespace, "plain", existing)  # guarded by resourceVersion
        assert proxy.sent("PUT") == ["502", "reset", "200"]

        # Events are best effort: a refused one is counted as dropped, never raised and never
        # resent (a 403 is what a namespace being deleted answers).
        dropped = _events_dropped()
        for fault in (Fault(503), Fault(reset=True), Fault(403)):
            proxy.inject("POST", fault)
            await EventRecorder(kube).post_event(_event_ref(namespace), "Normal", "Probe", "once")
        assert proxy.sent("POST", "/events") == ["503", "reset", "403"]  # one send each: not resent
        assert _events_dropped() == dropped + 3

    _with_proxy(cluster, scenario)
    assert kube_api.core.read_namespaced_secret("plain", namespace).data == {"k": "bmV3"}


def test_a_create_whose_answer_was_lost_resends_into_409_and_the_caller_reads_the_object(
    cluster: Cluster, kube_api: KubeApi, namespace: str
) -> None:
    async def scenario(kube: Kube, proxy: FaultProxy) -> bytes:
        proxy.inject("POST", Fault(500, forward=True))
        with pytest.raises(KubeConflict):
            await kube.create_secret(namespace, _secret_body("target"))
        assert proxy.sent("POST") == ["201->500", "409"]
        # The HMAC key: the first create got through, its answer did not; the key that
        # came back is the one stored, not a second one.
        proxy.inject("POST", Fault(reset=True, forward=True))
        key = await ensure_hmac_key(kube, namespace)
        assert proxy.sent("POST")[-2:] == ["201->reset", "409"]
        return key

    key = _with_proxy(cluster, scenario)
    stored = kube_api.core.read_namespaced_secret(c.HMAC_KEY_SECRET, namespace).data[c.HMAC_KEY_FIELD]
    assert base64.b64decode(stored) == key and len(key) == 32


def test_resends_are_bounded_by_count_retry_after_cap_and_budget(
    cluster: Cluster, kube_api: KubeApi, namespace: str
) -> None:
    _plain_secret(kube_api, namespace)

    async def scenario(kube: Kube, proxy: FaultProxy) -> None:
        proxy.inject("GET", *[Fault(503)] * 10)
        with pytest.raises(KubeError, match="get secrets: API server answered 503"):
            await kube.read_secret(namespace, "plain")
        assert proxy.sent("GET") == ["503"] * FAST.attempts
        proxy.faults["GET"].clear()

        proxy.inject("GET", Fault(429, retry_after="3600"))
        started = time.monotonic()
        await kube.read_secret(namespace, "plain")
        assert FAST.max_retry_after <= time.monotonic() - started < FAST.max_retry_after + 1.0

    _with_proxy(cluster, scenario)

    tight = RetryPolicy(attempts=10, base_delay=0.05, max_delay=0.2, max_retry_after=5.0, budget=1.0)

    async def over_budget(kube: Kube, proxy: FaultProxy) -> None:
        proxy.inject("GET", *[Fault(429, retry_after="0.8")] * 5)
        started = time.monotonic()
        with pytest.raises(KubeError, match="throttled by the API server") as raised:
            await kube.read_secret(namespace, "plain")
        assert time.monotonic() - started < 1.5
        assert proxy.sent("GET") == ["429", "429"]  # a third send would start after the 1 s budget
        assert 0.8 <= raised.value.retry_after < 1.0  # the caller's requeue honours the server too

    _with_proxy(cluster, over_budget, tight)
