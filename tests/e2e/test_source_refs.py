"""Several stores in one ExternalSecret (ESO's per-entry `sourceRef.storeRef`), on a real cluster.

Each entry reads the store it names, with the namespace's own permissions; one store failing
leaves the Secret with its last good data (fail static) and the condition names the entry.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client import ApiException

from tests.e2e.conftest import GROUP, VERSION, Vaultsync, fake_entry
from tests.e2e.workloads import stays
from tests.env.kube import KubeApi
from tests.env.operator import OperatorProcess

pytestmark = pytest.mark.e2e


@pytest.fixture
def shared(vs: Vaultsync, kube_api: KubeApi) -> Iterator[str]:
    """A ClusterSecretStore admitting the test's namespace."""
    name = f"shared-{vs.namespace}"
    vs.fake_store(
        name,
        [fake_entry("db", {"password": "from-shared"})],
        cluster=True,
        conditions=[{"namespaces": [vs.namespace]}],
    )
    yield name
    kube_api.custom.delete_cluster_custom_object(GROUP, VERSION, "clustersecretstores", name)


def two_stores(shared: str) -> dict[str, Any]:
    return {
        "storeRef": {"name": "own"},
        "refreshInterval": "1s",
        "data": [
            {"secretKey": "own", "remoteRef": {"key": "db", "property": "password"}},
            {
                "secretKey": "shared",
                "remoteRef": {"key": "db", "property": "password"},
                "sourceRef": {"storeRef": {"name": shared, "kind": "ClusterSecretStore"}},
            },
        ],
    }


def test_each_entry_reads_its_store_and_one_failing_store_keeps_the_last_good_secret(
    vs: Vaultsync, operator: OperatorProcess, shared: str, kube_api: KubeApi
) -> None:
    vs.fake_store("own", [fake_entry("db", {"password": "from-own"})])
    vs.external_secret("both", two_stores(shared))
    vs.wait_data("both", {"own": "from-own", "shared": "from-shared"})
    written = vs.secret("both").metadata.resource_version

    # The shared store loses the key: the entry that reads it is named, nothing is written.
    vs.apply_store(
        shared,
        {"provider": {"fake": {"data": []}}, "conditions": [{"namespaces": [vs.namespace]}]},
        cluster=True,
    )
    condition = vs.wait_reason("both", "KeyNotFound")
    assert condition["message"].startswith("spec.data[1].remoteRef.key:"), condition

    def last_good() -> None:
        assert vs.secret("both").metadata.resource_version == written
        assert vs.secret_data("both") == {"own": "from-own", "shared": "from-shared"}

    stays(last_good, seconds=5)  # five refresh intervals

    # Back: the Secret follows both stores again.
    vs.apply_store(
        shared,
        {
            "provider": {"fake": {"data": [fake_entry("db", {"password": "again"})]}},
            "conditions": [{"namespaces": [vs.namespace]}],
        },
        cluster=True,
    )
    vs.wait_data("both", {"own": "from-own", "shared": "again"})


def test_a_source_store_the_namespace_may_not_use_is_refused_naming_the_entry(
    vs: Vaultsync, operator: OperatorProcess, kube_api: KubeApi, other_namespace: str
) -> None:
    vs.fake_store("own", [fake_entry("db", {"password": "from-own"})])
    # A ClusterSecretStore admitting another namespace only.
    closed = f"closed-{vs.namespace}"
    vs.fake_store(
        closed,
        [fake_entry("db", {"password": "not-yours"})],
        cluster=True,
        conditions=[{"namespaces": [other_namespace]}],
    )
    # A SecretStore of another namespace, named from this one.
    Vaultsync(kube_api, other_namespace).fake_store("theirs", [fake_entry("db", {"password": "not-yours"})])
    try:
        spec = two_stores(closed)
        vs.external_secret("cluster", spec)
        condition = vs.wait_reason("cluster", "StoreNotAllowed")
        assert condition["message"] == (
            f"spec.data[1].sourceRef.storeRef.name: ClusterSecretStore {closed!r} does not allow "
            f"namespace {vs.namespace!r} (see its spec.conditions)"
        )
        spec["data"][1]["sourceRef"] = {"storeRef": {"name": "theirs"}}
        vs.external_secret("namespaced", spec)
        condition = vs.wait_reason("namespaced", "StoreNotFound")
        assert condition["message"].startswith(
            "spec.data[1].sourceRef.storeRef.name: SecretStore 'theirs' not found"
        )

        def nothing_written() -> None:
            assert not vs.secret_exists("cluster") and not vs.secret_exists("namespaced")
            assert "not-yours" not in str(vs.get_external_secret("cluster"))

        stays(nothing_written, seconds=3)
    finally:
        kube_api.custom.delete_cluster_custom_object(GROUP, VERSION, "clustersecretstores", closed)


def test_the_schema_refuses_a_source_ref_without_a_store(vs: Vaultsync, kube_api: KubeApi) -> None:
    spec = {
        "storeRef": {"name": "own"},
        "data": [
            {"secretKey": "a", "remoteRef": {"key": "db"}, "sourceRef": {"storeRef": {"kind": "SecretStore"}}}
        ],
    }
    with pytest.raises(ApiException) as refused:
        vs.external_secret("bad", spec)
    assert refused.value.status == 422
    assert "spec.data[0].sourceRef.storeRef.name" in str(refused.value.body)


def test_a_find_with_its_own_source_ref_lists_and_reads_that_store(
    vs: Vaultsync, operator: OperatorProcess, kube_api: KubeApi
) -> None:
    vs.fake_store("own", [fake_entry("app/a", "own-a"), fake_entry("cfg", '{"c": "own-c"}')])
    shared = f"listed-{vs.namespace}"
    vs.fake_store(
        shared,
        [fake_entry("app/a", "shared-a"), fake_entry("app/b", "shared-b"), fake_entry("other/x", "no")],
        cluster=True,
        conditions=[{"namespaces": [vs.namespace]}],
    )
    try:
        vs.external_secret(
            "found",
            {
                "storeRef": {"name": "own"},
                "dataFrom": [
                    {"find": {"path": "app/"}},
                    {
                        "find": {"path": "app/"},
                        "sourceRef": {"storeRef": {"name": shared, "kind": "ClusterSecretStore"}},
                        "rewrite": [{"regexp": {"source": "^app/", "target": "shared-"}}],
                    },
                    {"extract": {"key": "cfg"}},
                ],
            },
        )
        # Each find listed its own store and read the values it found there.
        vs.wait_data(
            "found", {"app_a": "own-a", "shared-a": "shared-a", "shared-b": "shared-b", "c": "own-c"}
        )
    finally:
        kube_api.custom.delete_cluster_custom_object(GROUP, VERSION, "clustersecretstores", shared)


def test_a_find_with_a_source_store_the_namespace_may_not_use_is_refused_naming_it(
    vs: Vaultsync, operator: OperatorProcess, kube_api: KubeApi, other_namespace: str
) -> None:
    vs.fake_store("own", [fake_entry("app/a", "own-a")])
    closed = f"closed-find-{vs.namespace}"
    vs.fake_store(
        closed,
        [fake_entry("app/secret", "not-yours")],
        cluster=True,
        conditions=[{"namespaces": [other_namespace]}],
    )
    Vaultsync(kube_api, other_namespace).fake_store("theirs", [fake_entry("app/secret", "not-yours")])

    def spec(source: dict[str, str]) -> dict[str, Any]:
        return {
            "storeRef": {"name": "own"},
            "refreshInterval": "1s",
            "dataFrom": [
                {"find": {"path": "app/"}},
                {"find": {"path": "app/"}, "sourceRef": {"storeRef": source}},
            ],
        }

    try:
        vs.external_secret("cluster", spec({"name": closed, "kind": "ClusterSecretStore"}))
        condition = vs.wait_reason("cluster", "StoreNotAllowed")
        assert condition["message"] == (
            f"spec.dataFrom[1].sourceRef.storeRef.name: ClusterSecretStore {closed!r} does not allow "
            f"namespace {vs.namespace!r} (see its spec.conditions)"
        )
        vs.external_secret("namespaced", spec({"name": "theirs"}))
        condition = vs.wait_reason("namespaced", "StoreNotFound")
        assert condition["message"].startswith(
            "spec.dataFrom[1].sourceRef.storeRef.name: SecretStore 'theirs' not found"
        )

        def nothing_written() -> None:
            assert not vs.secret_exists("cluster") and not vs.secret_exists("namespaced")
            assert "not-yours" not in str(vs.get_external_secret("cluster"))
            assert "app/secret" not in str(vs.get_external_secret("namespaced"))

        stays(nothing_written, seconds=3)
    finally:
        kube_api.custom.delete_cluster_custom_object(GROUP, VERSION, "clustersecretstores", closed)


def test_a_find_matching_nothing_in_its_source_store_never_deletes_the_secret(
    vs: Vaultsync, operator: OperatorProcess, kube_api: KubeApi
) -> None:
    vs.fake_store("own", [fake_entry("db", "own-db")])
    shared = f"emptied-{vs.namespace}"
    conditions = [{"namespaces": [vs.namespace]}]
    vs.fake_store(shared, [fake_entry("app/a", "shared-a")], cluster=True, conditions=conditions)
    try:
        vs.external_secret(
            "kept",
            {
                "storeRef": {"name": "own"},
                "refreshInterval": "1s",
                "target": {"deletionPolicy": "Delete"},
                "data": [{"secretKey": "db", "remoteRef": {"key": "db"}}],
                "dataFrom": [
                    {
                        "find": {"path": "app/"},
                        "sourceRef": {"storeRef": {"name": shared, "kind": "ClusterSecretStore"}},
                    }
                ],
            },
        )
        vs.wait_data("kept", {"db": "own-db", "app_a": "shared-a"})
        # Every key of spec.storeRef gone, and the find lists nothing: still no deletion,
        # whichever store is read first (an emptied listing looks like a revoked permission).
        vs.patch_store("own", {"spec": {"provider": {"fake": {"data": []}}}})
        vs.fake_store(shared, [], cluster=True, conditions=conditions)
        condition = vs.wait_reason("kept", "KeyNotFound")
        assert condition["message"].startswith("spec.dataFrom[0].find: no remote key under path 'app/'")

        def last_good() -> None:
            assert vs.secret_data("kept") == {"db": "own-db", "app_a": "shared-a"}  # 404 if deleted

        stays(last_good, seconds=5)  # five refresh intervals
    finally:
        kube_api.custom.delete_cluster_custom_object(GROUP, VERSION, "clustersecretstores", shared)


def test_without_spec_store_ref_every_entry_reads_its_own_store(
    vs: Vaultsync, operator: OperatorProcess, shared: str
) -> None:
    """ESO's `secretStoreRef` is optional when every entry names its store: so is `storeRef`."""
    vs.fake_store("own", [fake_entry("db", {"password": "from-own"}), fake_entry("app/x", "own-x")])
    spec = two_stores(shared)
    del spec["storeRef"]
    spec["data"][0]["sourceRef"] = {"storeRef": {"name": "own"}}
    spec["dataFrom"] = [{"find": {"path": "app/"}, "sourceRef": {"storeRef": {"name": "own"}}}]
    vs.external_secret("no-default", spec)
    vs.wait_data("no-default", {"own": "from-own", "shared": "from-shared", "app_x": "own-x"})


@pytest.mark.parametrize("field", ["data", "dataFrom"])
def test_without_spec_store_ref_an_entry_without_a_source_store_is_refused_naming_store_ref(
    vs: Vaultsync, shared: str, field: str
) -> None:
    spec: dict[str, Any] = {
        "data": [
            {
                "secretKey": "a",
                "remoteRef": {"key": "db"},
                "sourceRef": {"storeRef": {"name": shared, "kind": "ClusterSecretStore"}},
            }
        ],
    }
    orphan = {"secretKey": "b", "remoteRef": {"key": "db"}} if field == "data" else {"extract": {"key": "db"}}
    spec.setdefault(field, []).append(orphan)
    with pytest.raises(ApiException) as refused:
        vs.external_secret("orphan", spec)
    assert refused.value.status == 422
    body = str(refused.value.body)
    assert "spec.storeRef" in body and "sourceRef.storeRef" in body, body
