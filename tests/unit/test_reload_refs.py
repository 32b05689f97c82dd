"""What a workload's annotations ask to be restarted for, and which digests the operator keeps.

Pure logic: reloadrefs.py parses tenant-written annotations (aliases, limits, refusals);
unmanaged.py keeps digests only for referenced objects and turns a changed digest into one
rotation, a first digest into none. The end-to-end tests (tests/e2e/test_reload_*.py) show
the same against a real cluster.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import REGISTRY

from vaultsync import constants as c
from vaultsync.reloadrefs import describe, pod_template, watched
from vaultsync.unmanaged import Unmanaged, object_digest

KEY = b"k" * 32


def workload(
    annotations: dict[str, str], spec: dict[str, Any] | None = None, kind: str = "Deployment"
) -> dict[str, Any]:
    template = {
        "spec": spec
        or {
            "containers": [
                {"name": "a", "envFrom": [{"configMapRef": {"name": "cfg"}}, {"secretRef": {"name": "sec"}}]}
            ]
        }
    }
    body_spec: dict[str, Any] = (
        {"jobTemplate": {"spec": {"template": template}}} if kind == "CronJob" else {"template": template}
    )
    return {
        "metadata": {"name": "w", "namespace": "ns", "uid": "u1", "annotations": annotations},
        "spec": body_spec,
    }


@pytest.mark.parametrize(
    ("annotations", "keys"),
    [
        ({c.ANNOTATION_RELOAD: "a, b"}, {"a", "b"}),
        ({c.ANNOTATION_RELOAD_CONFIGMAPS: "cfg"}, {"configmap/cfg"}),
        ({c.ANNOTATION_AUTO_RELOAD: "true"}, {"sec", "configmap/cfg"}),
        ({c.RELOADER_AUTO: "true"}, {"sec", "configmap/cfg"}),
        ({c.RELOADER_SECRET_AUTO: "true"}, {"sec"}),
        ({c.RELOADER_CONFIGMAP_AUTO: "true"}, {"configmap/cfg"}),
        ({c.RELOADER_SECRET_RELOAD: "x"}, {"x"}),
        ({c.RELOADER_CONFIGMAP_RELOAD: "y"}, {"configmap/y"}),
        ({c.RELOADER_AUTO: "false"}, set()),
    ],
)
def test_each_annotation_and_alias_names_its_keys(annotations: dict[str, str], keys: set[str]) -> None:
    assert watched("Deployment", workload(annotations)).keys == keys


def test_search_mode_counts_referenced_objects_only_when_matched_and_auto_wins() -> None:
    search = watched("Deployment", workload({c.RELOADER_SEARCH: "true"}))
    assert search.keys == set() and search.match_only == {"sec", "configmap/cfg"}
    assert search.wants("sec", matched=True) and not search.wants("sec", matched=False)
    both = watched("Deployment", workload({c.RELOADER_SEARCH: "true", c.RELOADER_AUTO: "true"}))
    assert both.keys == {"sec", "configmap/cfg"} and both.match_only == set()


def test_a_cronjobs_references_are_read_from_its_job_template() -> None:
    body = workload({c.ANNOTATION_AUTO_RELOAD: "true"}, kind="CronJob")
    assert pod_template("CronJob", body)["spec"]["containers"][0]["name"] == "a"
    assert watched("CronJob", body).keys == {"sec", "configmap/cfg"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "a,other/cfg",
            "metadata.annotations[vaultsync.io/reload]: 'other/cfg' is not a name: names only, "
            "in the workload's own namespace",
        ),
        (
            ",".join(f"n{i}" for i in range(65)),
            "metadata.annotations[vaultsync.io/reload]: 65 names, at most 64",
        ),
        ("a,Bad_Name", "metadata.annotations[vaultsync.io/reload]: 'Bad_Name' is not a valid object name"),
        (
            "a," + "x" * 254,
            "metadata.annotations[vaultsync.io/reload]: '" + "x" * 64 + "' is not a valid object name",
        ),
    ],
)
def test_a_bad_list_is_refused_as_a_whole_naming_the_field(value: str, message: str) -> None:
    result = watched(
        "Deployment", workload({c.ANNOTATION_RELOAD: value, c.ANNOTATION_RELOAD_CONFIGMAPS: "ok"})
    )
    assert result.refused == [message]
    assert result.keys == {"configmap/ok"}  # the other annotation still counts


def test_sixty_four_names_are_accepted() -> None:
    names = [f"n{i}" for i in range(c.MAX_RELOAD_NAMES)]
    assert watched("Deployment", workload({c.ANNOTATION_RELOAD: ",".join(names)})).keys == set(names)


def test_events_name_secrets_and_configmaps_apart() -> None:
    assert describe(["a", "b"]) == "Secret a, b"
    assert describe(["a", "configmap/c"]) == "Secret a and ConfigMap c"


def test_digests_are_keyed_per_namespace_and_ignore_metadata() -> None:
    body = {"metadata": {"name": "c", "labels": {"x": "1"}}, "data": {"k": "v"}}
    relabelled = {"metadata": {"name": "c", "labels": {"x": "2"}}, "data": {"k": "v"}}
    assert object_digest(KEY, "a", "ConfigMap", body) == object_digest(KEY, "a", "ConfigMap", relabelled)
    assert object_digest(KEY, "a", "ConfigMap", body) != object_digest(KEY, "b", "ConfigMap", body)


class FakeRollouts:
    def __init__(self) -> None:
        self.changes: list[tuple[str, str, bool]] = []

    def object_changed(
        self, namespace: str, key: str, fingerprint: str, *, matched: bool, first_sight: bool
    ) -> None:
        self.changes.append((namespace, key, first_sight))


class FakeKube:
    def __init__(self) -> None:
        self.reads: list[str] = []
        self.events: list[str] = []

    async def read_configmap(self, namespace: str, name: str) -> dict[str, Any]:
        self.reads.append(name)
        return {"metadata": {"name": name, "namespace": namespace}, "data": {"k": "v1"}}

    async def post_event(self, ref: Any, type_: str, reason: str, message: str) -> None:
        self.events.append(reason)


def _digests() -> float | None:
    return REGISTRY.get_sample_value("vaultsync_reload_digests")


def cm(name: str, value: str, namespace: str = "ns") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace}, "data": {"k": value}}


def test_only_referenced_objects_are_remembered_and_a_first_digest_restarts_nothing() -> None:
    async def scenario() -> tuple[FakeRollouts, Unmanaged]:
        rollouts = FakeRollouts()
        unmanaged = Unmanaged(FakeKube(), rollouts, KEY, events=FakeKube())  # type: ignore[arg-type]
        for i in range(100):
            unmanaged.object_changed("ConfigMap", cm(f"other-{i}", "v"), deleted=False)
        unmanaged.workload_changed(
            "Deployment", workload({c.ANNOTATION_RELOAD_CONFIGMAPS: "cfg"}), deleted=False
        )
        unmanaged.object_changed("ConfigMap", cm("cfg", "v1"), deleted=False)  # first sight
        unmanaged.object_changed("ConfigMap", cm("cfg", "v1"), deleted=False)  # same data
        unmanaged.object_changed("ConfigMap", cm("cfg", "v2"), deleted=False)  # a change
        unmanaged.object_changed("ConfigMap", cm("cfg", "v2", namespace="elsewhere"), deleted=False)
        assert _digests() == 1
        unmanaged.workload_changed("Deployment", workload({}), deleted=False)  # opts out
        assert _digests() == 0
        await unmanaged.stop()
        return rollouts, unmanaged

    rollouts, _ = asyncio.run(scenario())
    assert rollouts.changes == [("ns", "configmap/cfg", False)]


def test_a_first_digest_that_differs_from_what_a_workload_was_restarted_for_is_a_missed_change() -> None:
    async def scenario() -> FakeRollouts:
        rollouts = FakeRollouts()
        unmanaged = Unmanaged(FakeKube(), rollouts, KEY, events=FakeKube())  # type: ignore[arg-type]
        old = object_digest(KEY, "ns", "ConfigMap", cm("cfg", "v1"))
        body = workload(
            {
                c.ANNOTATION_RELOAD_CONFIGMAPS: "cfg",
                c.ANNOTATION_SEEN_FINGERPRINTS: f'{{"configmap/cfg": "{old}"}}',
            }
        )
        unmanaged.workload_changed("Deployment", body, deleted=False)
        unmanaged.object_changed("ConfigMap", cm("cfg", "v2"), deleted=False)
        await unmanaged.stop()
        return rollouts

    assert asyncio.run(scenario()).changes == [("ns", "configmap/cfg", True)]


def test_a_refused_annotation_is_announced_once() -> None:
    async def scenario() -> FakeKube:
        kube = FakeKube()
        unmanaged = Unmanaged(kube, FakeRollouts(), KEY, events=kube)  # type: ignore[arg-type]
        for _ in range(3):
            unmanaged.workload_changed("Deployment", workload({c.ANNOTATION_RELOAD: "x/y"}), deleted=False)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        await unmanaged.stop()
        return kube

    assert asyncio.run(scenario()).events == [c.REASON_INVALID_RELOAD]


def test_a_merge_target_is_left_to_the_reconciler() -> None:
    """vaultsync writes into it and reports the rotation itself: no second, digest-based one."""

    async def scenario() -> FakeRollouts:
        rollouts = FakeRollouts()
        unmanaged = Unmanaged(FakeKube(), rollouts, KEY, events=FakeKube())  # type: ignore[arg-type]
        unmanaged.workload_changed("Deployment", workload({c.ANNOTATION_RELOAD: "shared"}), deleted=False)
        for value in ("v1", "v2"):
            body = cm("shared", value)
            body["metadata"]["annotations"] = {c.ANNOTATION_MERGED_BY: "es"}
            unmanaged.object_changed("Secret", body, deleted=False)
        await unmanaged.stop()
        return rollouts

    assert asyncio.run(scenario()).changes == []
