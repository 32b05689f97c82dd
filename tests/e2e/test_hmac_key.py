"""The operator's HMAC key: one per installation, never overwritten, and losing it is cheap.

Replicas that start together race to create the key Secret; the API server lets one POST
win and the others read the winner's key. A key Secret deleted while the operator runs is
put back with the key in use (nothing that was fingerprinted changes); deleted while it is
down, the next start makes one new key, rewrites each managed Secret's fingerprint
annotation once, and restarts no workload (no data changed). A key Secret that holds no
usable key stops the start instead of being replaced.
"""

from __future__ import annotations

import asyncio
import base64
from functools import partial
from typing import Any

import pytest
from kubernetes import client, watch

from tests.e2e.conftest import Vaultsync, fake_entry
from tests.e2e.workloads import RELOAD, Workloads, container, deployment, env_from_key, pod_spec, stays
from tests.env.kube import Cluster, KubeApi
from tests.env.waiting import eventually
from vaultsync import constants as c
from vaultsync.errors import HmacKeyUnusable
from vaultsync.hmackey import ensure_hmac_key, keep_hmac_key
from vaultsync.kube import Kube

pytestmark = pytest.mark.e2e

FORCE_SYNC = c.ANNOTATION_FORCE_SYNC

REPLICAS = 6
ROUNDS = 5


def _stored_key(api: KubeApi, namespace: str) -> bytes:
    secret = api.core.read_namespaced_secret(c.HMAC_KEY_SECRET, namespace)
    return base64.b64decode(secret.data[c.HMAC_KEY_FIELD])


def test_replicas_starting_together_end_with_the_one_stored_key(
    cluster: Cluster, kube_api: KubeApi, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))

    async def race() -> set[bytes]:
        replicas = [Kube() for _ in range(REPLICAS)]
        try:
            return set(await asyncio.gather(*(ensure_hmac_key(r, namespace) for r in replicas)))
        finally:
            await asyncio.gather(*(r.close() for r in replicas))

    for _ in range(ROUNDS):
        keys = asyncio.run(race())
        assert keys == {_stored_key(kube_api, namespace)}
        kube_api.core.delete_namespaced_secret(c.HMAC_KEY_SECRET, namespace)


def test_a_key_secret_deleted_while_running_is_put_back_with_the_same_key(
    cluster: Cluster, kube_api: KubeApi, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))

    async def scenario() -> tuple[bytes, bytes, bytes]:
        kube = Kube()
        try:
            key = await ensure_hmac_key(kube, namespace)
            kube_api.core.delete_namespaced_secret(c.HMAC_KEY_SECRET, namespace)
            kept = await keep_hmac_key(kube, namespace, key)
            again = await keep_hmac_key(kube, namespace, key)  # present: only read
            return key, kept, again
        finally:
            await kube.close()

    key, kept, again = asyncio.run(scenario())
    assert key == kept == again == _stored_key(kube_api, namespace)


def test_an_unusable_key_secret_stops_the_start_and_is_not_overwritten(
    cluster: Cluster, kube_api: KubeApi, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    kube_api.core.create_namespaced_secret(
        namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name=c.HMAC_KEY_SECRET), data={"key": "c2hvcnQ="}),
    )

    async def start() -> HmacKeyUnusable:
        kube = Kube()
        try:
            with pytest.raises(HmacKeyUnusable) as refused:
                await ensure_hmac_key(kube, namespace)
            return refused.value
        finally:
            await kube.close()

    refused = asyncio.run(start())
    assert refused.message.startswith(
        f"Secret {namespace}/{c.HMAC_KEY_SECRET}: data.key: must hold at least 32"
    )
    assert "c2hvcnQ" not in refused.message and "short" not in refused.message
    assert _stored_key(kube_api, namespace) == b"short"


def _writes_since(api: KubeApi, namespace: str, name: str, resource_version: str) -> list[str]:
    """Every change of one Secret since `resource_version`, replayed by a watch from there."""
    events = watch.Watch().stream(
        api.core.list_namespaced_secret,
        namespace,
        field_selector=f"metadata.name={name}",
        resource_version=resource_version,
        timeout_seconds=2,
    )
    return [event["type"] for event in events]


def test_a_key_lost_while_down_costs_one_write_per_secret_and_no_restart(
    vs: Vaultsync, kube_api: KubeApi, namespace: str, run_operator: Any
) -> None:
    vs.fake_store("fake", [fake_entry("db", {"password": "pw-one"}, "1")])
    spec = {
        "storeRef": {"name": "fake"},
        "refreshInterval": "1h",
        "data": [{"secretKey": "password", "remoteRef": {"key": "db", "property": "password"}}],
    }
    workloads = Workloads(kube_api, namespace)
    with run_operator(namespace, "--namespace", namespace):
        for name in ("one", "two"):
            vs.external_secret(name, spec)
            vs.wait_reason(name, "Synced")
        workloads.create(
            deployment(
                "web",
                annotations={RELOAD: "one,two"},
                spec=pod_spec(container(**env_from_key("one", "password"))),
            )
        )
        old_key = _stored_key(kube_api, namespace)
    kube_api.core.delete_namespaced_secret(c.HMAC_KEY_SECRET, namespace)
    before = {name: vs.get_external_secret(name)["status"]["dataHMAC"] for name in ("one", "two")}
    versions = {name: vs.secret(name).metadata.resource_version for name in ("one", "two")}
    template = workloads.get("Deployment", "web")["spec"]["template"]

    with run_operator(namespace, "--namespace", namespace):
        # A sync (at start if the Secret's watch event finds its fingerprint stale, else forced
        # here, or the next refresh) fingerprints with the new key: one write; later syncs
        # find nothing to write. A token set before the operator listed would count as old.
        vs.external_secret("probe", spec)
        vs.wait_reason("probe", "Synced")
        for token in ("first", "second"):
            for name in ("one", "two"):
                vs.patch_external_secret(name, {"metadata": {"annotations": {FORCE_SYNC: token}}})
            eventually(partial(_handled, vs, token), what=f"the {token} forced syncs", timeout=30)
        for name in ("one", "two"):
            assert vs.get_external_secret(name)["status"]["dataHMAC"] != before[name]
        stays(lambda: _same_template(workloads, template), seconds=3)

    new_key = _stored_key(kube_api, namespace)
    assert new_key != old_key and len(new_key) == 32
    for name in ("one", "two"):
        assert vs.secret_data(name) == {"password": "pw-one"}
        assert _writes_since(kube_api, namespace, name, versions[name]) == ["MODIFIED"]
    assert workloads.get("Deployment", "web")["metadata"]["generation"] == 1


def _handled(vs: Vaultsync, token: str) -> None:
    for name in ("one", "two"):
        status = vs.get_external_secret(name)["status"]
        assert status.get("forceSyncHandled") == token and status["conditions"][0]["reason"] == "Synced", (
            status
        )


def _same_template(workloads: Workloads, template: dict[str, Any]) -> None:
    assert workloads.get("Deployment", "web")["spec"]["template"] == template, "the workload was restarted"
