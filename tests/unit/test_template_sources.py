"""A ConfigMap or Secret a template reads (templateFrom) is followed: its change schedules the
ExternalSecrets that read it, and nothing else, at once; the initial listing schedules nothing."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from vaultsync.scheduler import Scheduler


def body(name: str, template_from: list[dict[str, Any]], policy: str = "Periodic") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "shop", "uid": name, "generation": 1},
        "spec": {
            "storeRef": {"name": "fake"},
            "refreshPolicy": policy,
            "data": [{"secretKey": "a", "remoteRef": {"key": "k"}}],
            "target": {"template": {"templateFrom": template_from}},
        },
    }


def source(kind: str, name: str, namespace: str = "shop") -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": name, "namespace": namespace}}


CONFIGMAP = [{"configMap": {"name": "tpl", "items": [{"key": "a"}]}}]
SECRET = [{"secret": {"name": "tpl", "items": [{"key": "a"}]}}]


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def scheduler_with(*bodies: dict[str, Any]) -> tuple[Scheduler, Clock]:
    clock = Clock()
    scheduler = Scheduler(None, b"k" * 32, workers=1, clock=clock)  # type: ignore[arg-type]
    for b in bodies:
        scheduler.observe(b)
    for tracked in scheduler._tracked.values():
        tracked.due = None  # synced: due only when something schedules it
    return scheduler, clock


def due(scheduler: Scheduler) -> set[str]:
    return {name for (_, name), tracked in scheduler._tracked.items() if tracked.due is not None}


def test_a_changed_configmap_schedules_exactly_its_readers_now() -> None:
    scheduler, clock = scheduler_with(body("a", CONFIGMAP), body("b", SECRET), body("c", []))
    scheduler.template_source_changed("ConfigMap", source("ConfigMap", "tpl"), listed=False)
    assert due(scheduler) == {"a"}
    assert scheduler._tracked[("shop", "a")].due == clock.now
    scheduler.template_source_changed("Secret", source("Secret", "tpl"), listed=False)
    assert due(scheduler) == {"a", "b"}


@pytest.mark.parametrize(
    ("kind", "name", "namespace", "listed"),
    [
        ("ConfigMap", "tpl", "shop", True),  # the initial listing: no change
        ("ConfigMap", "other", "shop", False),
        ("ConfigMap", "tpl", "elsewhere", False),  # same name, another namespace
        ("Secret", "tpl", "shop", False),  # same name, another kind
    ],
)
def test_nothing_else_schedules_a_reader(kind: str, name: str, namespace: str, listed: bool) -> None:
    scheduler, _ = scheduler_with(body("a", CONFIGMAP))
    scheduler.template_source_changed(kind, source(kind, name, namespace), listed=listed)
    assert due(scheduler) == set()


def test_only_periodic_readers_follow_their_templates() -> None:
    scheduler, _ = scheduler_with(
        body("on-change", CONFIGMAP, "OnChange"), body("once", CONFIGMAP, "CreatedOnce")
    )
    scheduler.template_source_changed("ConfigMap", source("ConfigMap", "tpl"), listed=False)
    assert due(scheduler) == set()


def test_a_reader_that_stops_naming_it_or_is_deleted_is_forgotten() -> None:
    first, second = body("a", CONFIGMAP), body("b", CONFIGMAP)
    scheduler, _ = scheduler_with(first, second)
    edited = copy.deepcopy(first)
    edited["spec"]["target"]["template"]["templateFrom"] = SECRET
    scheduler.observe(edited)
    scheduler.observe(second, deleted=True)
    for tracked in scheduler._tracked.values():
        tracked.due = None
    scheduler.template_source_changed("ConfigMap", source("ConfigMap", "tpl"), listed=False)
    assert due(scheduler) == set()
    assert ("shop", "ConfigMap", "tpl") not in scheduler._template_users
