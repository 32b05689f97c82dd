"""How `Rollouts` turns rotations into patches over time: coalesced, once, never stale, never lost.

The Kubernetes side is an in-memory stand-in that keeps workloads with a resourceVersion
and answers a stale patch with a conflict, as the API server does; the end-to-end tests in
tests/e2e/test_rollouts.py show the same rules against a real cluster.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from vaultsync import constants as c
from vaultsync import rollout
from vaultsync.errors import KubeConflict, KubeNotFound
from vaultsync.kube import ObjectRef
from vaultsync.rollout import Rollouts

KEY = b"k" * 32
ES = ObjectRef(c.API_VERSION, c.KIND_EXTERNAL_SECRET, "shop", "db-creds", "uid-es")
WINDOW = 0.05


class FakeKube:
    """Deployments of one namespace, patched with merge semantics and resourceVersion checks."""

    def __init__(self, *workloads: dict[str, Any]) -> None:
        self.workloads = {w["metadata"]["name"]: w for w in workloads}
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.events: list[tuple[str, str, str]] = []
        self.conflicts_left = 0
        self.lists: list[str] = []
        self.reads = 0
        self.patching = 0  # patches in flight
        self.most_patching = 0
        self.patch_seconds = 0.0
        self.events_open = asyncio.Event()  # events are posted once it is set
        self.events_open.set()
        self.secrets: dict[str, dict[str, Any]] = {}  # name → body, for the pending-restart mark

    async def read_secret(self, namespace: str, name: str) -> dict[str, Any]:
        if name not in self.secrets:
            raise KubeNotFound(f"secret {name} not found")
        body: dict[str, Any] = json.loads(json.dumps(self.secrets[name]))
        return body

    async def replace_secret(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        if body["metadata"]["resourceVersion"] != self.secrets[name]["metadata"]["resourceVersion"]:
            raise KubeConflict("update secrets: conflict")
        self.secrets[name] = {**body, "metadata": {**body["metadata"], "resourceVersion": "2"}}

    async def list_workloads(self, namespace: str) -> list[tuple[str, dict[str, Any]]]:
        self.lists.append(namespace)
        return [("Deployment", json.loads(json.dumps(w))) for w in self.workloads.values()]

    async def read_workload(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        self.reads += 1
        body: dict[str, Any] = json.loads(json.dumps(self.workloads[name]))
        return body

    async def patch_workload(self, kind: str, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        self.patching += 1
        self.most_patching = max(self.most_patching, self.patching)
        try:
            await asyncio.sleep(self.patch_seconds)
            self._patch(name, patch)
        finally:
            self.patching -= 1

    def _patch(self, name: str, patch: Mapping[str, Any]) -> None:
        current = self.workloads[name]
        if (
            self.conflicts_left
            or patch["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]
        ):
            self.conflicts_left = max(0, self.conflicts_left - 1)
            self.bump(name)
            raise KubeConflict("patch deployments: conflict")
        self.patches.append((name, json.loads(json.dumps(patch))))
        current["metadata"]["annotations"].update(patch["metadata"]["annotations"])
        self.bump(name)

    async def post_event(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None:
        await self.events_open.wait()
        self.events.append((ref.name, reason, message))

    def bump(self, name: str) -> None:
        meta = self.workloads[name]["metadata"]
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)


def deployment(name: str, reload: str, paused: bool = False) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "shop",
            "uid": f"uid-{name}",
            "resourceVersion": "1",
            "annotations": {c.ANNOTATION_RELOAD: reload},
        },
        "spec": {"paused": paused, "template": {"spec": {"containers": []}}},
    }


def rollouts(kube: FakeKube, per_minute: int = 60) -> Rollouts:
    return Rollouts(kube, KEY, WINDOW, per_minute, events=kube)  # type: ignore[arg-type]


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for `check()`; the timeout only stops a broken test, it is not what is measured."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


def test_rotations_inside_the_window_make_one_patch_per_workload() -> None:
    kube = FakeKube(deployment("web", "db-creds,api-keys"), deployment("worker", "api-keys"))

    async def scenario() -> None:
        service = rollouts(kube)
        await service.secret_rotated("shop", "db-creds", "fp-db", ES)
        await service.secret_rotated("shop", "api-keys", "fp-api", ES)
        await asyncio.sleep(WINDOW * 4)
        await service.stop()

    asyncio.run(scenario())
    assert sorted(name for name, _ in kube.patches) == ["web", "worker"]
    assert [e for e in kube.events if e[1] == "Restarted"] == [
        ("web", "Restarted", "restarted: Secret api-keys, db-creds changed"),
        ("worker", "Restarted", "restarted: Secret api-keys changed"),
    ]


def test_a_stopping_operator_makes_the_restarts_still_inside_their_window() -> None:
    kube = FakeKube(deployment("web", "db-creds"))

    async def scenario() -> None:
        service = Rollouts(kube, KEY, 3600.0, 60, events=kube)  # type: ignore[arg-type]
        await service.secret_rotated("shop", "db-creds", "fp-db", ES)
        await service.stop()

    asyncio.run(scenario())
    assert [name for name, _ in kube.patches] == ["web"]


def test_a_patch_is_planned_from_a_fresh_read_and_retried_on_conflict() -> None:
    kube = FakeKube(deployment("web", "db-creds,api-keys"))
    kube.conflicts_left = 2

    async def scenario() -> None:
        service = rollouts(kube)
        await service.secret_rotated("shop", "db-creds", "fp-db", ES)
        await asyncio.sleep(WINDOW * 4)
        await service.secret_rotated("shop", "api-keys", "fp-api", ES)
        await asyncio.sleep(WINDOW * 4)
        await service.stop()

    asyncio.run(scenario())
    assert [name for name, _ in kube.patches] == ["web", "web"]
    last = kube.patches[-1][1]["metadata"]["annotations"][c.ANNOTATION_SEEN_FINGERPRINTS]
    assert json.loads(last) == {"db-creds": "fp-db", "api-keys": "fp-api"}


def test_a_paused_deployment_gets_one_deferral_event_however_often_it_is_rechecked() -> None:
    kube = FakeKube(deployment("web", "db-creds", paused=True))

    async def scenario() -> None:
        service = rollouts(kube)
        await service.secret_rotated("shop", "db-creds", "fp-db", ES)
        await asyncio.sleep(WINDOW * 4)
        await service.secret_rotated("shop", "db-creds", "fp-db", ES)  # a recheck, same change
        await asyncio.sleep(WINDOW * 4)
        await service.stop()

    asyncio.run(scenario())
    assert kube.patches == []
    assert [e[1] for e in kube.events] == ["RestartDeferred"]


def test_a_paused_workload_waiting_for_its_recheck_does_not_delay_other_restarts() -> None:
    kube = FakeKube(deployment("held", "db-creds", paused=True), deployment("web", "api-keys"))

    async def scenario() -> None:
        service = rollouts(kube)
        await service.secret_rotated("shop", "db-creds", "fp-db", ES)
        await asyncio.sleep(WINDOW * 4)  # "held" is now waiting for its recheck, seconds away
        await service.secret_rotated("shop", "api-keys", "fp-api", ES)
        await asyncio.sleep(WINDOW * 4)
        assert [name for name, _ in kube.patches] == ["web"]
        await service.stop()

    asyncio.run(scenario())


def test_a_burst_is_restarted_after_the_quiet_period_without_waiting_for_the_window() -> None:
    kube = FakeKube(deployment("web", "db-creds,api-keys"))

    async def scenario() -> None:
        service = Rollouts(kube, KEY, 3600.0, 60, quiet=0.05, events=kube)  # type: ignore[arg-type]
        await service.secret_rotated("shop", "db-creds", "fp-db", ES)
        await service.secret_rotated("shop", "api-keys", "fp-api", ES)
        await until(lambda: bool(kube.patches))
        await service.stop()

    asyncio.run(scenario())
    assert [name for name, _ in kube.patches] == ["web"]


def test_rotations_that_keep_coming_are_restarted_within_the_window() -> None:
    names = [f"s-{i}" for i in range(c.MAX_RELOAD_NAMES)]  # 10 ms apart: 0.64 s, past the window
    kube = FakeKube(deployment("web", ",".join(names)))

    async def scenario() -> None:
        service = Rollouts(kube, KEY, 0.2, 60, quiet=0.1, events=kube)  # type: ignore[arg-type]
        for name in names:  # a new rotation every 10 ms: never quiet for 100 ms
            await service.secret_rotated("shop", name, "fp", ES)
            if kube.patches:
                break
            await asyncio.sleep(0.01)
        assert kube.patches, "the restart waited for the rotations to stop"
        await service.stop()

    asyncio.run(scenario())


def test_workloads_are_restarted_in_parallel_up_to_the_bound() -> None:
    kube = FakeKube(*(deployment(f"app-{i:02d}", "db-creds") for i in range(30)))
    kube.patch_seconds = 0.01

    async def scenario() -> None:
        service = Rollouts(kube, KEY, WINDOW, 60, concurrency=4, events=kube)  # type: ignore[arg-type]
        await service.secret_rotated("shop", "db-creds", "fp-db", ES)
        await until(lambda: len(kube.patches) == 30)
        await service.stop()

    asyncio.run(scenario())
    assert kube.most_patching == 4


def test_one_list_per_batch_and_no_read_unless_a_patch_conflicts() -> None:
    kube = FakeKube(deployment("web", "db-creds,api-keys,cache-creds"), deployment("worker", "api-keys"))

    async def scenario() -> None:
        service = rollouts(kube)
        for secret in ("db-creds", "api-keys", "cache-creds"):
            await service.secret_rotated("shop", secret, f"fp-{secret}", ES)
        await until(lambda: len(kube.patches) == 2)
        await service.stop()

    asyncio.run(scenario())
    assert kube.lists == ["shop"]
    assert kube.reads == 0


def test_a_restart_does_not_wait_for_its_events_and_stop_posts_them() -> None:
    kube = FakeKube(*(deployment(f"app-{i}", "db-creds") for i in range(3)))
    kube.events_open.clear()

    async def scenario() -> None:
        service = rollouts(kube)
        await service.secret_rotated("shop", "db-creds", "fp-db", ES)
        await until(lambda: len(kube.patches) == 3)
        assert kube.events == []  # every restart made while its Events are still held
        stopping = asyncio.create_task(service.stop())
        await asyncio.sleep(0.01)
        kube.events_open.set()
        await stopping

    asyncio.run(scenario())
    assert sorted(e[1] for e in kube.events) == ["Restarted"] * 3 + ["WorkloadRestarted"] * 3


def test_events_still_held_after_the_grace_period_are_given_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rollout, "STOP_GRACE_SECONDS", 0.05)
    monkeypatch.setattr(rollout, "EVENT_DRAIN_SECONDS", 0.05)
    kube = FakeKube(deployment("web", "db-creds"))
    kube.events_open.clear()

    async def scenario() -> None:
        service = rollouts(kube)
        await service.secret_rotated("shop", "db-creds", "fp-db", ES)
        await until(lambda: bool(kube.patches))
        await asyncio.wait_for(service.stop(), timeout=5)

    asyncio.run(scenario())
    assert [name for name, _ in kube.patches] == ["web"]
    assert kube.events == []


def test_queued_events_are_bounded(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(rollout, "MAX_QUEUED_EVENTS", 4)
    kube = FakeKube(*(deployment(f"app-{i}", "db-creds") for i in range(5)))
    kube.events_open.clear()

    async def scenario() -> None:
        service = rollouts(kube)
        await service.secret_rotated("shop", "db-creds", "fp-db", ES)
        await until(lambda: len(kube.patches) == 5)
        kube.events_open.set()
        await service.stop()

    with caplog.at_level(logging.WARNING, logger="vaultsync.rollout"):
        asyncio.run(scenario())
    assert len(kube.events) == 4  # of 10: the rest was dropped, not queued without end
    assert [r.getMessage() for r in caplog.records] == ["background work dropped"]


def marked_secret(name: str, fingerprint: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "shop",
            "resourceVersion": "1",
            "labels": {c.LABEL_OWNER_NAME: "db-creds"},
            "annotations": {
                c.ANNOTATION_PENDING_RESTART: fingerprint,
                c.ANNOTATION_DATA_FINGERPRINT: fingerprint,
                "keep": "me",
            },
            "ownerReferences": [{"name": "db-creds", "uid": "uid-es"}],
        }
    }


def test_a_pending_mark_is_resumed_once_and_cleared_after_the_restart() -> None:
    kube = FakeKube(deployment("web", "db-creds"))
    kube.secrets["db-creds"] = marked_secret("db-creds", "fp-db")

    async def scenario() -> None:
        service = rollouts(kube)
        service.resume(kube.secrets["db-creds"])
        await service.secret_rotated("shop", "db-creds", "fp-db", ES)  # the same rotation
        await until(
            lambda: c.ANNOTATION_PENDING_RESTART not in kube.secrets["db-creds"]["metadata"]["annotations"]
        )
        service.resume(marked_secret("db-creds", "fp-db"))  # resumed again: already seen
        await asyncio.sleep(WINDOW * 4)
        await service.stop()

    asyncio.run(scenario())
    assert [name for name, _ in kube.patches] == ["web"]
    assert kube.secrets["db-creds"]["metadata"]["annotations"] == {
        c.ANNOTATION_DATA_FINGERPRINT: "fp-db",
        "keep": "me",
    }


def test_a_newer_rotations_mark_is_not_cleared_by_an_older_restart() -> None:
    kube = FakeKube(deployment("web", "db-creds"))
    kube.secrets["db-creds"] = marked_secret("db-creds", "fp-new")

    async def scenario() -> None:
        service = rollouts(kube)
        await service.secret_rotated("shop", "db-creds", "fp-old", ES)
        await until(lambda: bool(kube.patches))
        await service.stop()

    asyncio.run(scenario())
    assert kube.secrets["db-creds"]["metadata"]["annotations"][c.ANNOTATION_PENDING_RESTART] == "fp-new"


def test_a_secret_without_a_mark_of_its_own_data_resumes_nothing() -> None:
    assert rollout.pending_rotation({"metadata": {"name": "s", "namespace": "shop"}}) is None
    stale = marked_secret("db-creds", "fp")
    stale["metadata"]["annotations"][c.ANNOTATION_DATA_FINGERPRINT] = "fp-other"
    assert rollout.pending_rotation(stale) is None  # a mark set by hand, or for older data
    rotation = rollout.pending_rotation(marked_secret("db-creds", "fp"))
    assert rotation is not None
    assert (rotation.secret, rotation.fingerprint, rotation.external_secret.uid) == (
        "db-creds",
        "fp",
        "uid-es",
    )
