"""How `Rollouts` turns rotations into patches over time: coalesced, once, never stale, never lost.

The Kubernetes side is an in-memory stand-in that keeps workloads with a resourceVersion
and answers a stale patch with a conflict, as the API server does; the end-to-end tests in
tests/e2e/test_rollouts.py show the same rules against a real cluster.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from vaultsync import constants as c
from vaultsync.errors import KubeConflict
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

    async def list_workloads(self, namespace: str) -> list[tuple[str, dict[str, Any]]]:
        return [("Deployment", json.loads(json.dumps(w))) for w in self.workloads.values()]

    async def read_workload(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(json.dumps(self.workloads[name]))
        return body

    async def patch_workload(self, kind: str, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
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
    return Rollouts(kube, KEY, WINDOW, per_minute)  # type: ignore[arg-type]


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
        service = Rollouts(kube, KEY, 3600.0, 60)  # type: ignore[arg-type]
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
