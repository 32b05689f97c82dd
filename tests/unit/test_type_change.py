"""A change of `spec.target.type`: the Secret is deleted and created again (its type is
immutable), and an operator that crashes between the two heals it at its next start.

The window cannot be closed: Kubernetes has no rename and no type change, and consumers find a
Secret by name, so a new Secret under a temporary name serves nobody. What is guaranteed:
the two requests follow each other at once, and the ExternalSecret's status is written only
after the create, so at the next start its status still describes the previous generation;
the scheduler reconciles such an ExternalSecret at once (not on its refresh grid), and the
reconcile, finding no Secret, creates it.
"""

from __future__ import annotations

import asyncio
import base64
import copy
from typing import Any

import pytest

from vaultsync.cache import FetchCache
from vaultsync.errors import KubeConflict, KubeNotFound
from vaultsync.models import parse_external_secret
from vaultsync.providers.base import RemoteRef, RemoteValue, SecretsClient, StoreContext
from vaultsync.reconcile import Reconciler
from vaultsync.scheduler import Scheduler
from vaultsync.storeclients import ResolvedStore


class Crash(BaseException):
    """The operator process dying between two requests."""


class Secrets:
    """The API server's Secrets, in memory; `crash_on_create` dies before the next create."""

    def __init__(self) -> None:
        self.secrets: dict[str, dict[str, Any]] = {}
        self.statuses: list[dict[str, Any]] = []
        self.crash_on_create = False
        self.uid = 0

    async def create_secret(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.crash_on_create:
            self.crash_on_create = False
            raise Crash
        name = body["metadata"]["name"]
        if name in self.secrets:
            raise KubeConflict("exists")
        self.uid += 1
        stored = copy.deepcopy(body)
        stored["metadata"]["uid"] = f"uid-{self.uid}"
        self.secrets[name] = stored
        return stored

    async def read_secret(self, namespace: str, name: str) -> dict[str, Any]:
        if name not in self.secrets:
            raise KubeNotFound(name)
        return copy.deepcopy(self.secrets[name])

    async def delete_secret(self, namespace: str, name: str, uid: str) -> None:
        assert self.secrets[name]["metadata"]["uid"] == uid
        del self.secrets[name]

    async def replace_secret(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self.secrets[name] = copy.deepcopy(body)
        return body

    async def patch_status(self, plural: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.statuses.append(status)

    async def post_event(self, *_: Any) -> None:
        return None


class Value(SecretsClient):
    async def get_secret(self, ref: RemoteRef) -> RemoteValue:
        return RemoteValue(b"pw", "1")

    async def validate(self) -> None:
        return None


class OneStore:
    def __init__(self) -> None:
        context = StoreContext("SecretStore", "s", "shop")
        self.resolved = ResolvedStore(context, "fake", Value(), "SecretStore/shop/s@u/1")

    async def for_namespace(self, namespace: str, ref: Any, field: str = "") -> ResolvedStore:
        return self.resolved


def body(generation: int, secret_type: str, status: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "app", "namespace": "shop", "uid": "es-uid", "generation": generation},
        "spec": {
            "storeRef": {"name": "s"},
            "refreshInterval": "1h",
            "target": {"type": secret_type},
            "data": [{"secretKey": "password", "remoteRef": {"key": "db"}}],
        },
        "status": status,
    }


def sync(kube: Secrets, reconciler: Reconciler, es_body: dict[str, Any]) -> dict[str, Any]:
    es = parse_external_secret(es_body)
    result = asyncio.run(reconciler.sync(es, max_age=0.0, next_refresh=3600.0, force_token=None))
    return dict(es.status if result.status is None else result.status)


def test_a_crash_between_delete_and_create_is_healed_at_once_at_the_next_start() -> None:
    kube = Secrets()
    reconciler = Reconciler(kube, OneStore(), FetchCache(), b"k" * 32, renderer=None, events=kube)  # type: ignore[arg-type]
    status = sync(kube, reconciler, body(1, "Opaque", {}))
    assert kube.secrets["app"]["type"] == "Opaque"
    assert status["observedGeneration"] == 1

    kube.crash_on_create = True  # spec.target.type changed; the operator dies mid-way
    with pytest.raises(Crash):
        sync(kube, reconciler, body(2, "example.com/token", status))
    assert "app" not in kube.secrets  # the window
    assert kube.statuses[-1]["observedGeneration"] == 1  # nothing claims generation 2 is done

    # The next start: the ExternalSecret as listed is not resumed on its grid but due now...
    async def due_at_start() -> float | None:
        scheduler = Scheduler(reconciler, b"k" * 32)
        scheduler.observe(body(2, "example.com/token", status))
        tracked = scheduler._tracked[("shop", "app")]
        return None if tracked.due is None else tracked.due - scheduler._clock()

    delay = asyncio.run(due_at_start())
    assert delay is not None and delay <= 0.0
    # ...and its reconcile creates the Secret with the new type.
    restarted = Reconciler(kube, OneStore(), FetchCache(), b"k" * 32, renderer=None, events=kube)  # type: ignore[arg-type]
    status = sync(kube, restarted, body(2, "example.com/token", status))
    assert kube.secrets["app"]["type"] == "example.com/token"
    assert base64.b64decode(kube.secrets["app"]["data"]["password"]) == b"pw"
    assert status["observedGeneration"] == 2
    assert status["conditions"][0]["reason"] == "Synced"
