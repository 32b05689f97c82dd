"""Manifests of External Secrets Operator's own documentation examples, ported by the rules of
docs/differences.md only, run green on a real API server with the operator.

The examples (tests/data/eso-examples/, modeled on ESO's docs/snippets and guides) are ESO
manifests as a team has them, with the store ESO's snippets leave out (`# ...`) named. Porting is
what differences.md says and nothing else: `vaultsync convert` rewrites the ESO objects (API
group, `secretStoreRef` → `storeRef`, Go templates → Jinja2), and the Go templates kept in a
ConfigMap are translated with the same translator. A conversion that is not complete fails the
test.

Each expected Secret is what ESO writes for the example, worked out from ESO's documented
semantics (noted where it is not obvious), not read back from vaultsync. One operator
(cluster-wide: a ClusterExternalSecret selects namespaces by label) and one namespace serve the
whole module; each example's objects have names of their own.

`dataFrom.find` here lists the fake store, which lists by path (a name prefix) and filters by
`name.regexp`; `find.tags` (and a Vault folder, AWS's name prefix, Azure's tags) are covered by
the provider contract suites (tests/providers/), which list real servers.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiException

from tests.e2e.conftest import GROUP, VERSION, Vaultsync, fake_entry
from tests.e2e.workloads import stays
from tests.env import kube
from tests.env.kube import Cluster, KubeApi
from tests.env.operator import OperatorProcess
from tests.env.waiting import eventually
from vaultsync.convert import Document, convert
from vaultsync.convert.gotemplate import translate

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "eso-examples"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


STORE: dict[str, Any] = {
    "/grafana/user": "admin",
    "/grafana/password": "gr4fana-pw",
    "/credentials/password": "pw-1",
    "/credentials/username": "shop",
    "app/db-password": "db-pw",
    "app/db-user": "db-admin",
    "app/api-token": "tok-1",
    "enc/standard": b64("s3cret"),
    "enc/url-safe": "Pz8-",  # "??>" in base64url: '-' is not in the standard alphabet
    "enc/plain": "not base64!",
    "enc/json": {"user": b64("admin"), "pass": b64("hunter2")},
}
EU_STORE = {"/credentials/password": "eu-pw", "eu/region": "eu-west-1", "eu/zone": "b"}
CLUSTER_STORE = "eso-example-cluster"  # named in cluster-external-secret.yaml
CES = "eso-example-shared"
CES_LABEL = {"eso-example": "shared-credentials"}
VARIABLES = {"user": "admin", "password": "gr4fana-pw"}


def fill(go_template: str, values: dict[str, str]) -> str:
    """What ESO renders for a template that only substitutes `{{ .name }}`."""
    for name, value in values.items():
        go_template = go_template.replace(f"{{{{ .{name} }}}}", value)
    return go_template


CONFIG = next(yaml.safe_load_all((EXAMPLES / "template-from-configmap.yaml").read_text()))["data"][
    "config.yaml"
]
# (example, Secret written, its data, its type, labels and annotations expected among its own)
EXPECTED: list[tuple[str, str, dict[str, str], str, dict[str, str], dict[str, str]]] = [
    (
        "template-from-configmap.yaml",
        "secret-to-be-created",
        {"config.yaml": fill(CONFIG, VARIABLES)},
        "Opaque",
        {},
        {},
    ),
    (
        "template-merge-policy.yaml",
        "template",
        {"name": "admin", "password": "pw-1-rotated", "username": "shop"},
        "Opaque",
        {},
        {},
    ),
    (
        "template-keys-and-values.yaml",
        "keys-and-values",
        {
            "my-application-admin": "gr4fana-pw",
            "application-type": "grafana",
            "username": "admin",
            "password": "gr4fana-pw",
        },
        "kubernetes.io/basic-auth",
        {"team": "grafana"},
        {"owner": "observability for admin", "last-sync-for-user/admin": "synced"},
    ),
    # ESO: a find entry lists the store, keeps the names matching name.regexp (RE2, unanchored)
    # and, with no rewrite, names each key by conversionStrategy Default ('/' → '_').
    (
        "find-by-name.yaml",
        "find-by-name",
        {"_credentials_password": "pw-1", "_credentials_username": "shop"},
        "Opaque",
        {},
        {},
    ),
    # ESO's Unicode strategy: each invalid character becomes fmt.Sprintf("_U%04x_", rune).
    (
        "find-conversion-strategy.yaml",
        "find-unicode",
        {"_U002f_grafana_U002f_user": "admin", "_U002f_grafana_U002f_password": "gr4fana-pw"},
        "Opaque",
        {},
        {},
    ),
    # ESO: rewrites run in order, each on the last one's output (regexp: Go's ReplaceAllString,
    # `$1`; transform: the template with .value); conversionStrategy is skipped when there is
    # a rewrite. Entries' keys are merged, later entries winning (none collide here).
    (
        "find-rewrite.yaml",
        "find-rewrite",
        {
            "db-password": "db-pw",
            "db-user": "db-admin",
            "api-token": "tok-1",
            "db.password": "db-pw",
            "db.user": "db-admin",
        },
        "Opaque",
        {},
        {},
    ),
    # ESO: Base64 is the standard alphabet with padding; Auto tries Base64, then Base64URL, then
    # keeps the value; extract's decodingStrategy decodes each property's value.
    (
        "decoding-strategy.yaml",
        "decoding",
        {
            "standard": "s3cret",
            "url-safe": "??>",
            "not-encoded": "not base64!",
            "user": "admin",
            "pass": "hunter2",
        },
        "Opaque",
        {},
        {},
    ),
    # ESO: an entry with sourceRef.storeRef reads that store, the others spec.secretStoreRef; a
    # find entry's store is the one listed.
    (
        "several-stores.yaml",
        "several-stores",
        {"username": "shop", "eu-password": "eu-pw", "eu_region": "eu-west-1", "eu_zone": "b"},
        "Opaque",
        {},
        {},
    ),
    # ESO: creationPolicy Merge writes its keys into the existing Secret, whose own keys stay.
    (
        "creation-policy-merge.yaml",
        "app-settings",
        {"log-level": "debug", "password": "pw-1"},
        "Opaque",
        {},
        {},
    ),
]


def ported(path: Path) -> list[dict[str, Any]]:
    """The example's objects as vaultsync's, changed only as docs/differences.md says."""
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    eso = [d for d in documents if str(d["apiVersion"]).startswith("external-secrets.io/")]
    conversion = convert(Document(f"{path.name}#{i}", d) for i, d in enumerate(eso))
    assert conversion.complete, [str(f) for f in conversion.findings]
    assert not conversion.refused
    configmaps = [d for d in documents if d["kind"] == "ConfigMap"]
    for configmap in configmaps:
        configmap["data"] = {k: translate(v) for k, v in configmap["data"].items()}
    secrets = [d for d in documents if d["kind"] == "Secret"]
    return [*configmaps, *secrets, *conversion.objects]


def create(vs: Vaultsync, body: dict[str, Any]) -> None:
    """One ported object, in the module's namespace (a ClusterExternalSecret is cluster-wide)."""
    if body["kind"] == "ConfigMap":
        vs.api.core.create_namespaced_config_map(vs.namespace, body)
    elif body["kind"] == "Secret":
        vs.api.core.create_namespaced_secret(vs.namespace, body)
    elif body["kind"] == "ClusterExternalSecret":
        remove_cluster_external_secret(vs.api)
        vs.api.custom.create_cluster_custom_object(GROUP, VERSION, "clusterexternalsecrets", body)
    else:
        assert body["kind"] == "ExternalSecret"
        vs.external_secret(body["metadata"]["name"], body["spec"])


def remove_cluster_external_secret(api: KubeApi) -> None:
    try:
        api.custom.delete_cluster_custom_object(GROUP, VERSION, "clusterexternalsecrets", CES)
    except ApiException as exc:
        if exc.status != 404:
            raise


@pytest.fixture(scope="module")
def vs(kube_api: KubeApi, install_crds: list[str]) -> Iterator[Vaultsync]:
    """The module's namespace with its stores: `fake`, `fake-eu`, `rotating`, `vanishing`, and a
    ClusterSecretStore for the ClusterExternalSecret."""
    namespace = kube.create_namespace(kube_api, prefix="vs-eso-")
    scene = Vaultsync(kube_api, namespace)
    scene.fake_store("fake", [fake_entry(k, v) for k, v in STORE.items()])
    scene.fake_store("fake-eu", [fake_entry(k, v) for k, v in EU_STORE.items()])
    scene.fake_store("rotating", [fake_entry("token", "v1")])
    scene.fake_store("vanishing", [fake_entry("session/token", "t-1")])
    scene.fake_store(CLUSTER_STORE, [fake_entry("/credentials/username", "shop")], cluster=True)
    yield scene
    remove_cluster_external_secret(kube_api)
    kube_api.custom.delete_cluster_custom_object(GROUP, VERSION, "clustersecretstores", CLUSTER_STORE)
    kube.delete_namespace(kube_api, namespace)


@pytest.fixture(scope="module")
def operator(
    cluster: Cluster,
    vs: Vaultsync,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[OperatorProcess]:
    """One operator for the module, watching every namespace (its HMAC key in the module's);
    its log is printed when a test of the module failed."""
    failed = request.session.testsfailed
    running = OperatorProcess(
        kubeconfig=cluster.kubeconfig,
        namespace=vs.namespace,
        log_path=tmp_path_factory.mktemp("eso-examples") / "operator.log",
    )
    running.start()
    try:
        yield running
    finally:
        running.stop()
        if request.session.testsfailed > failed:
            print(f"--- operator log ({running.log_path}) ---\n{running.logs()}")


@pytest.mark.parametrize(
    ("example", "secret", "data", "secret_type", "labels", "annotations"),
    EXPECTED,
    ids=[e[0] for e in EXPECTED],
)
def test_an_eso_documentation_example_ported_runs_green(
    vs: Vaultsync,
    operator: OperatorProcess,
    example: str,
    secret: str,
    data: dict[str, str],
    secret_type: str,
    labels: dict[str, str],
    annotations: dict[str, str],
) -> None:
    for body in ported(EXAMPLES / example):
        create(vs, body)
    vs.wait_data(secret, data)
    written = vs.secret(secret)
    assert written.type == secret_type
    assert labels.items() <= (written.metadata.labels or {}).items()
    assert annotations.items() <= (written.metadata.annotations or {}).items()


def test_target_immutable_writes_an_immutable_secret(vs: Vaultsync, operator: OperatorProcess) -> None:
    """ESO: target.immutable writes the Secret with `immutable: true`."""
    for body in ported(EXAMPLES / "target-immutable.yaml"):
        create(vs, body)
    vs.wait_data("immutable", {"username": "shop"})
    assert vs.secret("immutable").immutable is True


def test_deletion_policy_delete_deletes_the_secret_once_its_keys_are_gone(
    vs: Vaultsync, operator: OperatorProcess
) -> None:
    """ESO: deletionPolicy Delete deletes the Secret when every remote key it read is gone."""
    for body in ported(EXAMPLES / "deletion-policy-delete.yaml"):
        create(vs, body)
    vs.wait_data("session", {"token": "t-1"})
    vs.patch_store("vanishing", {"spec": {"provider": {"fake": {"data": [fake_entry("other", "x")]}}}})
    eventually(lambda: gone(vs, "session"), what="the Secret to be deleted")


def gone(vs: Vaultsync, name: str) -> None:
    assert not vs.secret_exists(name)


def test_refresh_policies_follow_their_spec(vs: Vaultsync, operator: OperatorProcess) -> None:
    """ESO: Periodic reads again every refreshInterval; CreatedOnce never once the Secret exists;
    OnChange when the ExternalSecret's spec changes. The Periodic one seeing the new value within
    its 1 s interval is the moment the others could have seen it too."""
    for body in ported(EXAMPLES / "refresh-policy.yaml"):
        create(vs, body)
    for name in ("periodic", "created-once", "on-change"):
        vs.wait_data(name, {"token": "v1"})

    vs.patch_store("rotating", {"spec": {"provider": {"fake": {"data": [fake_entry("token", "v2")]}}}})
    vs.wait_data("periodic", {"token": "v2"})
    stays(lambda: held(vs, {"created-once": "v1", "on-change": "v1"}), seconds=3)

    for name in ("on-change", "created-once"):
        vs.patch_external_secret(name, {"spec": {"target": {"labels": {"team": "shop"}}}})
    vs.wait_data("on-change", {"token": "v2"})
    stays(lambda: held(vs, {"created-once": "v1"}), seconds=3)


def held(vs: Vaultsync, tokens: dict[str, str]) -> None:
    assert {name: vs.secret_data(name) for name in tokens} == {
        name: {"token": token} for name, token in tokens.items()
    }


def test_a_cluster_external_secret_provisions_the_selected_namespaces(
    vs: Vaultsync, operator: OperatorProcess, kube_api: KubeApi
) -> None:
    """ESO: an ExternalSecret named externalSecretName in each namespace a namespaceSelectors
    entry matches, and none elsewhere."""
    selected = kube.create_namespace(kube_api, prefix="vs-eso-selected-")
    other = kube.create_namespace(kube_api, prefix="vs-eso-other-")
    try:
        kube_api.core.patch_namespace(selected, {"metadata": {"labels": CES_LABEL}})
        for body in ported(EXAMPLES / "cluster-external-secret.yaml"):
            create(vs, body)
        Vaultsync(kube_api, selected).wait_data("shared-credentials", {"username": "shop"})

        def provisioned() -> None:
            found = kube_api.custom.get_cluster_custom_object(GROUP, VERSION, "clusterexternalsecrets", CES)
            assert (found.get("status") or {}).get("provisionedNamespaces") == [selected], found.get("status")

        eventually(provisioned, what="the ClusterExternalSecret to report its one namespace")
        assert not Vaultsync(kube_api, other).secret_exists("shared-credentials")
        listed = kube_api.custom.list_namespaced_custom_object(GROUP, VERSION, other, "externalsecrets")
        assert listed["items"] == []
    finally:
        remove_cluster_external_secret(kube_api)
        kube.delete_namespace(kube_api, selected)
        kube.delete_namespace(kube_api, other)
