"""ClusterExternalSecret on a real cluster: one declaration, an ExternalSecret in every selected
namespace, following namespaces as they appear, change labels or go; a name taken by an
ExternalSecret that is not its own fails that namespace and leaves the object untouched.

The operator runs cluster-wide (a ClusterExternalSecret selects namespaces by label); each test
selects only its own namespaces with a label value unique to it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from tests.e2e.conftest import GROUP, VERSION, Vaultsync, fake_entry
from tests.e2e.workloads import stays
from tests.env import kube
from tests.env.kube import KubeApi
from tests.env.operator import OperatorProcess
from tests.env.waiting import eventually

pytestmark = pytest.mark.e2e

LABEL = "vaultsync-test/cluster-external-secret"
CHILD = "app-db"


@pytest.fixture
def selector() -> str:
    """A label value only this test's namespaces carry."""
    return uuid.uuid4().hex[:12]


@pytest.fixture
def namespaces(kube_api: KubeApi) -> Iterator[Callable[..., str]]:
    """`namespaces(labels)`: a fresh namespace with these labels, deleted after the test."""
    created: list[str] = []

    def make(labels: dict[str, str] | None = None) -> str:
        name = kube.create_namespace(kube_api, prefix="vs-ces-")
        if labels:
            label(kube_api, name, labels)
        created.append(name)
        return name

    yield make
    for name in created:
        kube.delete_namespace(kube_api, name)


@pytest.fixture
def shared_store(kube_api: KubeApi, namespace: str, install_crds: list[str]) -> Iterator[str]:
    name = f"shared-{namespace}"
    Vaultsync(kube_api, namespace).fake_store(name, [fake_entry("db", {"password": "pw-1"})], cluster=True)
    yield name
    kube_api.custom.delete_cluster_custom_object(GROUP, VERSION, "clustersecretstores", name)


@pytest.fixture
def cluster_operator(run_operator: Callable[..., Any], namespace: str) -> Iterator[OperatorProcess]:
    """The operator watching every namespace (its HMAC key in the test's namespace)."""
    with run_operator(namespace) as running:
        yield running


def label(api: KubeApi, namespace: str, labels: Mapping[str, str | None]) -> None:
    api.core.patch_namespace(namespace, {"metadata": {"labels": labels}})


def child(api: KubeApi, namespace: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = api.custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, "externalsecrets", CHILD
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return found


@dataclass
class Scene:
    """One test's ClusterExternalSecret (`name`), the store it reads, and its namespaces."""

    api: KubeApi
    store: str
    selector: str
    name: str
    namespaces: Callable[..., str]

    def namespace(self, selected: bool = True) -> str:
        return self.namespaces({LABEL: self.selector} if selected else None)

    def declare(self, target: dict[str, Any] | None = None) -> None:
        """The declaration, its ExternalSecrets' `target` as given (none by default)."""
        spec: dict[str, Any] = {
            "storeRef": {"name": self.store, "kind": "ClusterSecretStore"},
            "refreshInterval": "1h",
            "data": [{"secretKey": "password", "remoteRef": {"key": "db", "property": "password"}}],
        }
        if target is not None:
            spec["target"] = target
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ClusterExternalSecret",
            "metadata": {"name": self.name},
            "spec": {
                "externalSecretName": CHILD,
                "namespaceSelectors": [{"matchLabels": {LABEL: self.selector}}],
                "refreshTime": "5s",
                "externalSecretSpec": spec,
            },
        }
        self.api.custom.create_cluster_custom_object(GROUP, VERSION, "clusterexternalsecrets", body)

    def patch(self, spec: dict[str, Any]) -> None:
        self.api.custom.patch_cluster_custom_object(
            GROUP, VERSION, "clusterexternalsecrets", self.name, {"spec": spec}
        )

    def body(self) -> dict[str, Any]:
        found: dict[str, Any] = self.api.custom.get_cluster_custom_object(
            GROUP, VERSION, "clusterexternalsecrets", self.name
        )
        return found

    def status(self) -> dict[str, Any]:
        return dict(self.body().get("status") or {})

    def wait(self, provisioned: list[str], failed: list[str] | None = None) -> dict[str, Any]:
        def check() -> dict[str, Any]:
            status = self.status()
            assert status.get("provisionedNamespaces") == sorted(provisioned), status
            assert [f["namespace"] for f in status.get("failedNamespaces") or []] == sorted(failed or []), (
                status
            )
            return status

        return eventually(check, what=f"ClusterExternalSecret {self.name} to list {provisioned}", timeout=90)

    def child(self, namespace: str) -> dict[str, Any] | None:
        return child(self.api, namespace)


@pytest.fixture
def scene(
    kube_api: KubeApi,
    cluster_operator: OperatorProcess,
    shared_store: str,
    namespaces: Callable[..., str],
    selector: str,
) -> Iterator[Scene]:
    found = Scene(kube_api, shared_store, selector, f"ces-{uuid.uuid4().hex[:8]}", namespaces)
    yield found
    try:
        kube_api.custom.delete_cluster_custom_object(GROUP, VERSION, "clusterexternalsecrets", found.name)
    except ApiException as exc:
        if exc.status != 404:
            raise


def test_one_declaration_follows_namespaces_appearing_relabelled_and_going(scene: Scene) -> None:
    first = scene.namespace()
    unlabelled = scene.namespace(selected=False)
    scene.declare()

    scene.wait([first])
    Vaultsync(scene.api, first).wait_data(CHILD, {"password": "pw-1"})
    assert scene.child(unlabelled) is None
    owned = scene.child(first)
    assert owned is not None
    assert owned["metadata"]["ownerReferences"][0]["kind"] == "ClusterExternalSecret"
    assert scene.status()["conditions"][0]["reason"] == "Synced"

    # Relabelled into the selector: provisioned; out of it: its ExternalSecret is deleted.
    label(scene.api, unlabelled, {LABEL: scene.selector})
    scene.wait([first, unlabelled])
    Vaultsync(scene.api, unlabelled).wait_data(CHILD, {"password": "pw-1"})
    label(scene.api, first, {LABEL: None})
    scene.wait([unlabelled])
    eventually(lambda: _gone(scene, first), what="the deselected namespace's ExternalSecret to go")

    # A namespace appearing with the label is provisioned; one being deleted leaves the list.
    late = scene.namespace()
    scene.wait([unlabelled, late])
    Vaultsync(scene.api, late).wait_data(CHILD, {"password": "pw-1"})
    kube.delete_namespace(scene.api, late)
    scene.wait([unlabelled])

    # Someone edits the provisioned ExternalSecret: it is put back as declared.
    scene.api.custom.patch_namespaced_custom_object(
        GROUP, VERSION, unlabelled, "externalsecrets", CHILD, {"spec": {"refreshInterval": "5m"}}
    )

    def restored() -> None:
        found = scene.child(unlabelled)
        assert found is not None and found["spec"]["refreshInterval"] == "1h", found

    eventually(restored, what="the edited ExternalSecret to be put back", timeout=60)

    # The declaration deleted: garbage collection takes its ExternalSecrets (and their Secrets).
    scene.api.custom.delete_cluster_custom_object(GROUP, VERSION, "clusterexternalsecrets", scene.name)
    eventually(lambda: _gone(scene, unlabelled), what="the ExternalSecrets to be collected", timeout=90)


def _gone(scene: Scene, namespace: str) -> None:
    assert scene.child(namespace) is None


def test_a_name_taken_by_an_external_secret_not_its_own_fails_that_namespace_and_leaves_it_untouched(
    scene: Scene,
) -> None:
    taken, free, secret_taken = (scene.namespace() for _ in range(3))
    tenant = Vaultsync(scene.api, taken)
    tenant.fake_store("own", [fake_entry("db", {"password": "tenant"})])
    tenant.external_secret(
        CHILD,
        {
            "storeRef": {"name": "own"},
            "data": [{"secretKey": "mine", "remoteRef": {"key": "db", "property": "password"}}],
        },
    )
    tenant.wait_data(CHILD, {"mine": "tenant"})
    tenant.wait_reason(CHILD, "Synced")  # its own first status write, after the Secret's
    before = tenant.get_external_secret(CHILD)
    # In the third namespace the ExternalSecret's name is free but its target Secret is not.
    scene.api.core.create_namespaced_secret(
        secret_taken, client.V1Secret(metadata=client.V1ObjectMeta(name=CHILD), string_data={"k": "theirs"})
    )

    scene.declare()
    status = scene.wait([free, secret_taken], failed=[taken])
    (failure,) = status["failedNamespaces"]
    assert failure["reason"] == (
        f"ExternalSecret {taken}/{CHILD} already exists and is not owned by this ClusterExternalSecret; "
        "it was left untouched"
    )
    assert status["conditions"][0]["reason"] == "NamespacesFailed"
    Vaultsync(scene.api, free).wait_data(CHILD, {"password": "pw-1"})

    # The foreign Secret is the provisioned ExternalSecret's own refusal; it is not overwritten.
    theirs = Vaultsync(scene.api, secret_taken)
    theirs.wait_reason(CHILD, "TargetConflict")
    assert theirs.secret_data(CHILD) == {"k": "theirs"}

    def untouched() -> None:
        now = tenant.get_external_secret(CHILD)
        assert now["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
        assert tenant.secret_data(CHILD) == {"mine": "tenant"}

    stays(untouched, seconds=8)  # more than a refreshTime: the periodic pass leaves it too

    # The tenant deletes its own: the name is free, and the namespace is provisioned.
    tenant.delete_external_secret(CHILD)
    scene.wait([taken, free, secret_taken])
    found = scene.child(taken)
    assert found is not None and found["metadata"]["ownerReferences"][0]["name"] == scene.name


def test_a_bad_declaration_names_the_field_and_touches_nothing(scene: Scene) -> None:
    target = scene.namespace()
    scene.declare()
    scene.wait([target])
    # Its own first sync writes the child's status; only after it is the child left alone.
    Vaultsync(scene.api, target).wait_reason(CHILD, "Synced")
    good = scene.child(target)
    assert good is not None

    # The schema refuses at apply what it can (the ExternalSecret's own rules included).
    with pytest.raises(ApiException) as refused:
        scene.patch({"externalSecretName": "Bad_Name"})
    assert refused.value.status == 422 and "externalSecretName" in str(refused.value.body)

    # What only the operator checks: reserved label domains of the ExternalSecrets' metadata.
    scene.patch({"externalSecretMetadata": {"labels": {"vaultsync.io/owner": "forged"}}})

    def invalid() -> dict[str, Any]:
        condition = scene.status()["conditions"][0]
        assert condition["reason"] == "InvalidSpec", condition
        return dict(condition)

    condition = eventually(invalid, what="the ClusterExternalSecret to report InvalidSpec")
    assert condition["message"].startswith("spec.externalSecretMetadata.labels:"), condition
    stays(lambda: _same(scene.child(target), good), seconds=6)


def _same(found: dict[str, Any] | None, expected: dict[str, Any]) -> None:
    assert found is not None
    assert found["metadata"]["resourceVersion"] == expected["metadata"]["resourceVersion"]


def test_steady_state_writes_nothing(scene: Scene) -> None:
    targets = [scene.namespace() for _ in range(2)]
    scene.declare()
    scene.wait(targets)
    for name in targets:
        Vaultsync(scene.api, name).wait_reason(CHILD, "Synced")

    def versions() -> list[str]:
        found = [scene.child(ns) for ns in targets]
        declared = scene.body()
        return [str(f["metadata"]["resourceVersion"]) for f in found if f] + [
            declared["metadata"]["resourceVersion"]
        ]

    before = versions()
    # Three refreshTimes (5 s): each pass finds everything as declared and writes nothing.
    stays(lambda: _equal(versions(), before), seconds=15)


def _equal(found: object, expected: object) -> None:
    assert found == expected, found


def test_each_provisioned_external_secret_reads_its_template_from_its_own_namespace(scene: Scene) -> None:
    """templateFrom names a ConfigMap by name only: each provisioned ExternalSecret reads the one
    of its own namespace (a namespace without it fails alone, never borrowing another's), and a
    change of one namespace's ConfigMap renders that namespace's Secret again, not the other's."""
    blue, green, bare = (scene.namespace() for _ in range(3))
    for ns, colour in ((blue, "blue"), (green, "green")):
        body = {"metadata": {"name": "tpl"}, "data": {"url": colour + "://{{ password }}"}}
        scene.api.core.create_namespaced_config_map(ns, body)
    scene.declare({"template": {"templateFrom": [{"configMap": {"name": "tpl", "items": [{"key": "url"}]}}]}})
    scene.wait([blue, green, bare])
    Vaultsync(scene.api, blue).wait_data(CHILD, {"url": "blue://pw-1"})
    Vaultsync(scene.api, green).wait_data(CHILD, {"url": "green://pw-1"})
    missing = Vaultsync(scene.api, bare).wait_reason(CHILD, "TemplateError")
    assert missing["message"] == (
        f"spec.target.template.templateFrom[0].configMap.name: ConfigMap {bare}/tpl does not exist"
    ), missing
    assert not Vaultsync(scene.api, bare).secret_exists(CHILD)

    green_secret = Vaultsync(scene.api, green).secret(CHILD).metadata.resource_version
    scene.api.core.patch_namespaced_config_map("tpl", blue, {"data": {"url": "navy://{{ password }}"}})
    Vaultsync(scene.api, blue).wait_data(CHILD, {"url": "navy://pw-1"})
    assert Vaultsync(scene.api, green).secret(CHILD).metadata.resource_version == green_secret

    # The namespace that lacked it gets its own ConfigMap: its Secret is rendered from that one.
    scene.api.core.create_namespaced_config_map(
        bare, {"metadata": {"name": "tpl"}, "data": {"url": "bare://{{ password }}"}}
    )
    Vaultsync(scene.api, bare).wait_data(CHILD, {"url": "bare://pw-1"}, timeout=90)
    for ns in (blue, green, bare):
        Vaultsync(scene.api, ns).wait_reason(CHILD, "Synced")
    # The API server's template defaults (mergePolicy, engineVersion, templateAs) are filled in
    # both under externalSecretSpec and in each ExternalSecret: the periodic pass writes nothing.
    settled = {ns: scene.child(ns) for ns in (blue, green, bare)}

    def unchanged() -> None:
        for ns, before in settled.items():
            assert before is not None
            _same(scene.child(ns), before)

    stays(unchanged, seconds=8)
