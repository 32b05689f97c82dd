"""Urgent restarts (`vaultsync respond`): now rather than after the quiet period and window,
yet bounded, because a tenant may put the urgent force-sync value on its own ExternalSecrets.

Uses the in-memory Kubernetes stand-in of test_rollout_service; quiet period and window are
an hour, so any restart seen within the test was made by urgency, not by the batch timer.
"""

from __future__ import annotations

import asyncio

from tests.unit.test_rollout_service import ES, KEY, FakeKube, deployment, until

from vaultsync import constants as c
from vaultsync.kube import ObjectRef
from vaultsync.rollout import Batches, Rollouts, Rotation

HOUR = 3600.0
OTHER = ObjectRef(c.API_VERSION, c.KIND_EXTERNAL_SECRET, "other", "db-creds", "uid-other")


def _service(kube: FakeKube, per_minute: int = 60) -> Rollouts:
    return Rollouts(kube, KEY, HOUR, per_minute, quiet=HOUR, events=kube)  # type: ignore[arg-type]


def test_an_urgent_rotation_is_restarted_without_waiting_for_quiet_period_or_window() -> None:
    kube = FakeKube(deployment("web", "db-creds"))

    async def scenario() -> None:
        service = _service(kube)
        await service.secret_rotated("shop", "db-creds", "fp-1", ES, urgent=True)
        await until(lambda: len(kube.patches) == 1)
        service.halt()

    asyncio.run(scenario())
    assert [name for name, _ in kube.patches] == ["web"]


def test_without_urgency_the_same_rotation_waits_for_its_window() -> None:
    kube = FakeKube(deployment("web", "db-creds"))

    async def scenario() -> None:
        service = _service(kube)
        await service.secret_rotated("shop", "db-creds", "fp-1", ES)
        await asyncio.sleep(c.RESTART_URGENT_DELAY_SECONDS * 3)
        service.halt()

    asyncio.run(scenario())
    assert kube.patches == []


def test_urgent_rotations_of_one_response_coalesce_into_one_restart_per_workload() -> None:
    kube = FakeKube(deployment("web", "db-creds,api-keys"))

    async def scenario() -> None:
        service = _service(kube)
        await service.secret_rotated("shop", "db-creds", "fp-db", ES, urgent=True)
        await service.secret_rotated("shop", "api-keys", "fp-api", ES, urgent=True)
        await until(lambda: len(kube.patches) == 1)
        await asyncio.sleep(c.RESTART_URGENT_DELAY_SECONDS * 2)
        service.halt()

    asyncio.run(scenario())
    assert [name for name, _ in kube.patches] == ["web"]


def test_a_tenant_repeating_urgent_force_syncs_gets_one_urgent_batch_per_window() -> None:
    """A hostile tenant rotates its own Secret over and over with urgent force-syncs: only the
    first batch is hurried; the rest wait for the (hour-long) window, so urgency cannot make
    its workloads restart more often than the window allows and eat the shared cap."""
    kube = FakeKube(deployment("web", "db-creds"))

    async def scenario() -> None:
        service = _service(kube)
        for attempt in range(4):
            await service.secret_rotated("shop", "db-creds", f"fp-{attempt}", ES, urgent=True)
            await asyncio.sleep(c.RESTART_URGENT_DELAY_SECONDS * 2)
        service.halt()

    asyncio.run(scenario())
    assert len(kube.patches) == 1


def test_one_namespace_using_its_urgent_batch_leaves_another_namespace_its_own() -> None:
    kube = FakeKube(deployment("web", "db-creds"))

    async def scenario() -> None:
        service = _service(kube)
        await service.secret_rotated("shop", "db-creds", "fp-1", ES, urgent=True)
        await until(lambda: kube.lists == ["shop"])
        await service.secret_rotated("other", "db-creds", "fp-2", OTHER, urgent=True)
        await until(lambda: kube.lists == ["shop", "other"])
        service.halt()

    asyncio.run(scenario())
    assert kube.lists == ["shop", "other"]


def test_hurry_only_brings_a_batch_forward() -> None:
    batches = Batches(quiet=10.0, window=20.0)
    batches.add("shop", Rotation("db", "fp", ES), now=100.0)
    assert batches.due("shop") == 110.0
    batches.hurry("shop", 100.5)
    assert batches.due("shop") == 100.5
    batches.hurry("shop", 105.0)
    assert batches.due("shop") == 100.5
    batches.take("shop")
    assert batches.due("shop") is None and not batches.hurried("shop")
