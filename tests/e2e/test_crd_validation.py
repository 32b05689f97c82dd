"""A real API server rejects bad ExternalSecrets and stores at `kubectl apply`, and keeps good ones.

Each bad spec below is a valid object with one thing wrong; the server must refuse it
with the field's path and the CRD's own message, so a user learns what to fix before
the operator ever sees the object. The good examples, including those in examples/,
must be accepted and come back with the documented defaults filled in.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.env.kube import Cluster

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("install_crds")]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
API_VERSION = "vaultsync.io/v1alpha1"
DELETE = object()
SECRET_REF = {"name": "creds", "key": "token"}
SERVICE_ACCOUNT_REF = {"name": "app", "audiences": ["vault"]}

EXTERNAL_SECRET: dict[str, Any] = {
    "apiVersion": API_VERSION,
    "kind": "ExternalSecret",
    "metadata": {"name": "db-creds"},
    "spec": {
        "storeRef": {"name": "fake"},
        "data": [{"secretKey": "password", "remoteRef": {"key": "production/database"}}],
    },
}
AWS = {
    "region": "us-east-1",
    "auth": {"secretRef": {"accessKeyId": SECRET_REF, "secretAccessKey": SECRET_REF}},
}
VAULT = {"server": "https://vault:8200", "auth": {"token": {"secretRef": SECRET_REF}}}
AZURE = {
    "vaultUrl": "https://shop.vault.azure.net",
    "tenantId": "tenant",
    "auth": {"clientSecret": {"clientId": "client", "secretRef": SECRET_REF}},
}
WORKLOAD_IDENTITY = {"clientId": "client", "serviceAccountRef": {"name": "app"}}
FAKE = {"data": [{"key": "production/database", "value": '{"password": "x"}'}]}


def store(kind: str, provider: str, config: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": "store"},
        "spec": {"provider": {provider: copy.deepcopy(config)}},
    }


def changed(base: dict[str, Any], **edits: Any) -> dict[str, Any]:
    """A copy of `base` with `spec__data__0__secretKey="x"`-style edits; DELETE removes."""
    body = copy.deepcopy(base)
    for dotted, value in edits.items():
        *parents, last = (int(p) if p.isdigit() else p for p in dotted.split("__"))
        node = body
        for part in parents:
            node = node[part]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return body


def apply(cluster: Cluster, tmp_path: Path, namespace: str, body: dict[str, Any]) -> str:
    """`kubectl apply` the object as a user would; raises RuntimeError with kubectl's output."""
    manifest = tmp_path / "object.json"  # JSON: no YAML 1.1 surprises like `y` read as true
    manifest.write_text(json.dumps(body))
    return cluster.run_kubectl("apply", "-n", namespace, "-f", str(manifest))


def get(cluster: Cluster, namespace: str, resource: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(
        cluster.run_kubectl("get", "-n", namespace, resource, name, "-o", "json")
    )
    return found


def rejected(body: dict[str, Any], field: str, message: str, case: str) -> Any:
    return pytest.param(body, field, message, id=case)


ES = EXTERNAL_SECRET
SS = "SecretStore"
CSS = "ClusterSecretStore"
DURATION = "refreshInterval must be a Go duration such as 30s, 5m or 1h30m, or 0 to sync once"
SECRET_KEY = "secretKey must be a valid Secret key"
DELIMITERS = "template.delimiters must be two different non-empty strings"
EXACTLY_ONE = "provider must set exactly one of aws, vault, azurekv, fake"
URL = "must be an origin, scheme://host or scheme://host:port with scheme http or https"
HTTPS_URL = "must be an origin, scheme://host or scheme://host:port with scheme https"

BAD_EXTERNAL_SECRETS = [
    rejected(changed(ES, spec__storeRef=DELETE), "spec.storeRef", "Required value", "no-store"),
    rejected(
        changed(ES, spec__storeRef__kind="Store"),
        "spec.storeRef.kind",
        'Unsupported value: "Store"',
        "store-kind",
    ),
    rejected(changed(ES, spec__refreshInterval="1x"), "spec.refreshInterval", DURATION, "unit"),
    rejected(changed(ES, spec__refreshInterval="5"), "spec.refreshInterval", DURATION, "no-unit"),
    rejected(changed(ES, spec__refreshInterval="-5m"), "spec.refreshInterval", DURATION, "neg"),
    rejected(changed(ES, spec__refreshInterval="1 h"), "spec.refreshInterval", DURATION, "space"),
    rejected(
        changed(ES, spec__data=DELETE),
        "spec.data",
        "Required value: data and dataFrom are both empty",
        "no-data",
    ),
    rejected(
        changed(ES, spec__data=[], spec__dataFrom=[]),
        "spec.data",
        "data and dataFrom are both empty",
        "empty-data-and-dataFrom",
    ),
    rejected(changed(ES, spec__data__0__secretKey="a/b"), "spec.data[0].secretKey", SECRET_KEY, "slash"),
    rejected(changed(ES, spec__data__0__secretKey="."), "spec.data[0].secretKey", SECRET_KEY, "dot"),
    rejected(changed(ES, spec__data__0__secretKey="..x"), "spec.data[0].secretKey", SECRET_KEY, "dotdot"),
    rejected(changed(ES, spec__data__0__secretKey=""), "spec.data[0].secretKey", SECRET_KEY, "empty-key"),
    rejected(
        changed(ES, spec__data__0__secretKey="k" * 254),
        "spec.data[0].secretKey",
        "Too long: may not be more than 253",
        "long-key",
    ),
    rejected(
        changed(ES, spec__data=[ES["spec"]["data"][0], ES["spec"]["data"][0]]),
        "spec.data[1]",
        "Duplicate value",
        "duplicate-secret-key",
    ),
    rejected(
        changed(ES, spec__data__0__remoteRef=DELETE),
        "spec.data[0].remoteRef",
        "Required value",
        "no-remote-ref",
    ),
    rejected(
        changed(ES, spec__data__0__remoteRef__key=""),
        "spec.data[0].remoteRef.key",
        "should be at least 1 chars long",
        "empty-remote-key",
    ),
    rejected(
        changed(ES, spec__dataFrom=[{}]),
        "spec.dataFrom[0]",
        "each dataFrom entry needs exactly one of extract or find",
        "dataFrom-without-extract-or-find",
    ),
    rejected(
        changed(ES, spec__dataFrom=[{"extract": {"version": "1"}}]),
        "spec.dataFrom[0].extract.key",
        "Required value",
        "extract-without-key",
    ),
    rejected(
        changed(ES, spec__target={"creationPolicy": "Adopt"}),
        "spec.target.creationPolicy",
        'Unsupported value: "Adopt"',
        "creation-policy",
    ),
    rejected(
        changed(ES, spec__target={"deletionPolicy": "Keep"}),
        "spec.target.deletionPolicy",
        'Unsupported value: "Keep"',
        "deletion-policy",
    ),
    rejected(
        changed(ES, spec__target={"name": "Db_Creds"}),
        "spec.target.name",
        "target.name must be a valid Secret name",
        "target-name",
    ),
    rejected(
        changed(ES, spec__target={"template": {"delimiters": ["<<"]}}),
        "spec.target.template.delimiters",
        DELIMITERS,
        "one-delimiter",
    ),
    rejected(
        changed(ES, spec__target={"template": {"delimiters": ["%%", "%%"]}}),
        "spec.target.template.delimiters",
        DELIMITERS,
        "same-delimiters",
    ),
    rejected(
        changed(ES, spec__target={"template": {"delimiters": ["", ">>"]}}),
        "spec.target.template.delimiters",
        DELIMITERS,
        "empty-delimiter",
    ),
    rejected(
        changed(ES, spec__target={"template": {"delimiters": ["<<", ">>", "!!"]}}),
        "spec.target.template.delimiters",
        "must have at most 2 items",
        "three-delimiters",
    ),
    rejected(
        changed(ES, spec__target={"template": {"data": {"ok": "x", "not ok": "y"}}}),
        "spec.target.template.data",
        "template.data key 'not ok' is not a valid Secret key",
        "template-key",
    ),
]

BAD_STORES = [
    rejected(
        changed(store(SS, "fake", FAKE), spec__provider=DELETE),
        "spec.provider",
        "Required value",
        "no-provider",
    ),
    rejected(
        changed(store(SS, "fake", FAKE), spec__provider={}),
        "spec.provider",
        EXACTLY_ONE,
        "empty-provider",
    ),
    rejected(
        changed(store(SS, "fake", FAKE), spec__provider__aws=AWS),
        "spec.provider",
        EXACTLY_ONE,
        "two-providers",
    ),
    rejected(
        changed(store(SS, "aws", AWS), spec__provider__aws__region=DELETE),
        "spec.provider.aws.region",
        "Required value",
        "aws-no-region",
    ),
    rejected(
        changed(store(SS, "aws", AWS), spec__provider__aws__endpoint="localhost:5000"),
        "spec.provider.aws.endpoint",
        f"aws.endpoint {URL}",
        "aws-endpoint",
    ),
    rejected(
        changed(store(SS, "aws", AWS), spec__provider__aws__auth={}),
        "spec.provider.aws.auth",
        "aws.auth must set exactly one of secretRef, jwt",
        "aws-auth-empty",
    ),
    rejected(
        changed(
            store(SS, "aws", AWS),
            spec__provider__aws__auth__jwt={"serviceAccountRef": {"name": "app"}, "roleArn": "arn"},
        ),
        "spec.provider.aws.auth",
        "aws.auth must set exactly one of secretRef, jwt",
        "aws-auth-two",
    ),
    rejected(
        changed(store(SS, "aws", AWS), spec__provider__aws__auth=DELETE),
        "spec.provider.aws.auth",
        "Required value: aws.auth is required in a SecretStore",
        "aws-operator-identity",
    ),
    rejected(
        changed(
            store(SS, "aws", AWS),
            spec__provider__aws__auth={"jwt": {"serviceAccountRef": {"name": "app"}}},
        ),
        "spec.provider.aws.auth.jwt.roleArn",
        "Required value",
        "aws-jwt-no-role",
    ),
    rejected(
        changed(store(SS, "aws", AWS), spec__provider__aws__auth__secretRef__accessKeyId={"name": "c"}),
        "spec.provider.aws.auth.secretRef.accessKeyId.key",
        "Required value",
        "selector-no-key",
    ),
    rejected(
        changed(store(SS, "vault", VAULT), spec__provider__vault__auth=DELETE),
        "spec.provider.vault.auth",
        "Required value: vault.auth is required in a SecretStore",
        "vault-operator-token",
    ),
    rejected(
        changed(store(SS, "vault", VAULT), spec__provider__vault__version="v3"),
        "spec.provider.vault.version",
        'Unsupported value: "v3"',
        "vault-version",
    ),
    rejected(
        changed(store(SS, "vault", VAULT), spec__provider__vault__server="vault:8200"),
        "spec.provider.vault.server",
        f"vault.server {URL}",
        "vault-server",
    ),
    rejected(
        changed(store(SS, "vault", VAULT), spec__provider__vault__caBundle="not base64!"),
        "spec.provider.vault.caBundle",
        "must be of type byte",
        "vault-ca-bundle",
    ),
    rejected(
        changed(
            store(SS, "vault", VAULT),
            spec__provider__vault__auth__appRole={"roleId": "r", "secretRef": SECRET_REF},
        ),
        "spec.provider.vault.auth",
        "vault.auth must set exactly one of token, appRole, kubernetes",
        "vault-auth-two",
    ),
    rejected(
        changed(store(SS, "vault", VAULT), spec__provider__vault__auth={"kubernetes": {"role": "shop"}}),
        "spec.provider.vault.auth.kubernetes.serviceAccountRef",
        "Required value",
        "vault-kubernetes-no-service-account",
    ),
    rejected(
        changed(store(SS, "azurekv", AZURE), spec__provider__azurekv__auth=DELETE),
        "spec.provider.azurekv.auth",
        "Required value",
        "azure-no-auth",
    ),
    rejected(
        changed(store(SS, "azurekv", AZURE), spec__provider__azurekv__auth={"managedIdentity": {}}),
        "spec.provider.azurekv.auth.managedIdentity",
        "Forbidden: azurekv.auth.managedIdentity is not allowed in a SecretStore",
        "azure-managed-identity",
    ),
    rejected(
        changed(
            store(SS, "azurekv", AZURE),
            spec__provider__azurekv__auth={"workloadIdentity": {"clientId": "c"}},
        ),
        "spec.provider.azurekv.auth.workloadIdentity.serviceAccountRef",
        "Required value",
        "azure-workload-identity-no-service-account",
    ),
    rejected(
        changed(store(SS, "azurekv", AZURE), spec__provider__azurekv__tenantId=DELETE),
        "spec.provider.azurekv.tenantId",
        "Required value: azurekv.tenantId is required with clientSecret and workloadIdentity auth",
        "azure-no-tenant",
    ),
    rejected(
        changed(store(SS, "azurekv", AZURE), spec__provider__azurekv__vaultUrl="http://shop.vault.azure.net"),
        "spec.provider.azurekv.vaultUrl",
        f"azurekv.vaultUrl {HTTPS_URL}",
        "azure-plain-http",
    ),
    rejected(
        changed(
            store(SS, "azurekv", AZURE),
            spec__provider__azurekv__auth__workloadIdentity=WORKLOAD_IDENTITY,
        ),
        "spec.provider.azurekv.auth",
        "azurekv.auth must set exactly one of clientSecret, workloadIdentity, managedIdentity",
        "azure-auth-two",
    ),
    rejected(
        changed(store(SS, "azurekv", AZURE), spec__provider__azurekv__authorityHost="login.local"),
        "spec.provider.azurekv.authorityHost",
        f"azurekv.authorityHost {HTTPS_URL}",
        "azure-authority-host",
    ),
    rejected(
        changed(store(SS, "fake", FAKE), spec__provider__fake__data__0__value=DELETE),
        "spec.provider.fake.data[0].value",
        "Required value",
        "fake-no-value",
    ),
    rejected(
        changed(store(CSS, "aws", AWS), spec__provider__aws__auth={}),
        "spec.provider.aws.auth",
        "aws.auth must set exactly one of secretRef, jwt",
        "cluster-aws-auth-empty",
    ),
    rejected(
        changed(store(CSS, "fake", FAKE), spec__conditions=[{}]),
        "spec.conditions[0]",
        "each conditions entry needs namespaces or namespaceSelector",
        "cluster-empty-condition",
    ),
    rejected(
        changed(
            store(CSS, "fake", FAKE),
            spec__conditions=[
                {"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In"}]}}
            ],
        ),
        "spec.conditions[0].namespaceSelector.matchExpressions[0].values",
        "matchExpressions values must be non-empty for In and NotIn",
        "cluster-in-without-values",
    ),
    rejected(
        changed(
            store(CSS, "fake", FAKE),
            spec__conditions=[
                {
                    "namespaceSelector": {
                        "matchExpressions": [{"key": "team", "operator": "Exists", "values": ["a"]}]
                    }
                }
            ],
        ),
        "spec.conditions[0].namespaceSelector.matchExpressions[0].values",
        "and empty for Exists and DoesNotExist",
        "cluster-exists-with-values",
    ),
    rejected(
        changed(
            store(CSS, "fake", FAKE),
            spec__conditions=[
                {"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Has"}]}}
            ],
        ),
        "spec.conditions[0].namespaceSelector.matchExpressions[0].operator",
        'Unsupported value: "Has"',
        "cluster-selector-operator",
    ),
]

GOOD_STORES = [
    pytest.param(store(SS, "aws", AWS), id="aws-secret-ref"),
    pytest.param(
        changed(
            store(SS, "aws", AWS),
            spec__provider__aws__endpoint="http://127.0.0.1:5000",
            spec__provider__aws__auth={
                "jwt": {"serviceAccountRef": {"name": "app"}, "roleArn": "arn:aws:iam::1:role/app"}
            },
        ),
        id="aws-jwt",
    ),
    pytest.param(store(SS, "vault", VAULT), id="vault-token"),
    pytest.param(
        changed(
            store(SS, "vault", VAULT),
            spec__provider__vault__caBundle="LS0tLS1CRUdJTi0tLS0t",
            spec__provider__vault__auth={"appRole": {"roleId": "r", "secretRef": SECRET_REF}},
        ),
        id="vault-approle",
    ),
    pytest.param(
        changed(
            store(SS, "vault", VAULT),
            spec__provider__vault__auth={
                "kubernetes": {"role": "shop", "serviceAccountRef": SERVICE_ACCOUNT_REF}
            },
        ),
        id="vault-kubernetes",
    ),
    pytest.param(store(SS, "azurekv", AZURE), id="azure-client-secret"),
    pytest.param(
        changed(
            store(SS, "azurekv", AZURE),
            spec__provider__azurekv__authorityHost="https://localhost:8443",
            spec__provider__azurekv__caBundle="LS0tLS1CRUdJTi0tLS0t",
            spec__provider__azurekv__verifyChallengeResource=False,
            spec__provider__azurekv__auth={"workloadIdentity": WORKLOAD_IDENTITY},
        ),
        id="azure-workload-identity",
    ),
    pytest.param(store(SS, "fake", FAKE), id="fake"),
    pytest.param(
        changed(store(CSS, "aws", AWS), spec__provider__aws__auth=DELETE),
        id="cluster-aws-default-chain",
    ),
    pytest.param(
        changed(store(CSS, "azurekv", AZURE), spec__provider__azurekv__auth={"managedIdentity": {}}),
        id="cluster-azure-managed-identity",
    ),
    pytest.param(
        changed(store(CSS, "vault", VAULT), spec__provider__vault__auth=DELETE),
        id="cluster-vault-operator-token",
    ),
    pytest.param(
        changed(
            store(CSS, "fake", FAKE),
            spec__conditions=[
                {"namespaces": ["shop"]},
                {
                    "namespaceSelector": {
                        "matchLabels": {"team": "shop"},
                        "matchExpressions": [
                            {"key": "env", "operator": "In", "values": ["prod"]},
                            {"key": "sandbox", "operator": "DoesNotExist"},
                        ],
                    }
                },
            ],
        ),
        id="cluster-conditions",
    ),
]


@pytest.fixture
def cluster_scoped(cluster: Cluster, namespace: str) -> Iterator[str]:
    """A name for a ClusterSecretStore unique to this test; the store is deleted afterwards."""
    name = f"{namespace}-store"
    yield name
    cluster.run_kubectl("delete", "clustersecretstore", name, "--ignore-not-found")
    cluster.run_kubectl("delete", "clusterexternalsecret", name, "--ignore-not-found")


def named(body: dict[str, Any], cluster_scoped: str) -> dict[str, Any]:
    """Gives a cluster-scoped object the test's unique name; namespaced objects keep theirs."""
    if body["kind"] in (CSS, CES["kind"]):
        return changed(body, metadata__name=cluster_scoped)
    return body


# A ClusterExternalSecret carries ExternalSecret's spec, with its rules, under externalSecretSpec.
CES: dict[str, Any] = {
    "apiVersion": API_VERSION,
    "kind": "ClusterExternalSecret",
    "metadata": {"name": "db-creds"},
    "spec": {"namespaces": ["shop"], "externalSecretSpec": copy.deepcopy(ES["spec"])},
}
BAD_CLUSTER_EXTERNAL_SECRETS = [
    rejected(
        changed(CES, spec__externalSecretSpec=DELETE), "spec.externalSecretSpec", "Required value", "no-spec"
    ),
    rejected(
        changed(CES, spec__externalSecretSpec__refreshInterval="1x"),
        "spec.externalSecretSpec.refreshInterval",
        DURATION,
        "es-rule",
    ),
    rejected(
        changed(CES, spec__externalSecretSpec__data__0__sourceRef={"storeRef": {"name": ""}}),
        "spec.externalSecretSpec.data[0].sourceRef.storeRef.name",
        "should be at least 1 chars long",
        "empty-source-store",
    ),
    rejected(
        changed(CES, spec__externalSecretName="Not_A_Name"),
        "spec.externalSecretName",
        "externalSecretName must be a valid object name",
        "child-name",
    ),
    rejected(
        changed(CES, spec__namespaces=["x"] * 1001),
        "spec.namespaces",
        "must have at most 1000 items",
        "namespaces",
    ),
    rejected(
        changed(CES, spec__namespaceSelectors=[{}] * 17),
        "spec.namespaceSelectors",
        "must have at most 16 items",
        "selectors",
    ),
    rejected(
        changed(CES, spec__refreshTime="soon"),
        "spec.refreshTime",
        "refreshTime must be a Go duration",
        "refresh",
    ),
]


# Targets that grant cluster access or belong to Kubernetes, Helm or vaultsync (targets.py).
BAD_TARGETS = [
    rejected(
        changed(ES, spec__target={"type": "kubernetes.io/service-account-token"}),
        "spec.target.type",
        "target.type 'kubernetes.io/service-account-token' is refused: the cluster would mint",
        "sa-token-type",
    ),
    rejected(
        changed(ES, spec__target={"type": "bootstrap.kubernetes.io/token"}),
        "spec.target.type",
        "is refused: it is a node-bootstrap credential",
        "bootstrap-type",
    ),
    rejected(
        changed(ES, spec__target={"type": "helm.sh/release.v1"}),
        "spec.target.type",
        "is refused: it is a Helm release record",
        "helm-type",
    ),
    rejected(
        changed(ES, spec__target={"type": "kubernetes.io/new"}),
        "spec.target.type",
        "belong to Kubernetes and Helm",
        "reserved-type",
    ),
    rejected(
        changed(ES, spec__target={"name": "sh.helm.release.v1.shop.v2"}),
        "spec.target.name",
        "Helm reads such Secrets as its release records",
        "helm-name",
    ),
    rejected(
        changed(ES, spec__target={"labels": {"team": "a", "vaultsync.io/external-secret": "x"}}),
        "spec.target.labels",
        "target.labels key 'vaultsync.io/external-secret' is refused",
        "vaultsync-label",
    ),
    rejected(
        changed(ES, spec__target={"labels": {"app.kubernetes.io/managed-by": "vaultsync"}}),
        "spec.target.labels",
        "target.labels key 'app.kubernetes.io/managed-by' is refused",
        "managed-by-label",
    ),
    rejected(
        changed(ES, spec__target={"labels": {"owner": "helm"}}),
        "spec.target.labels",
        "target.labels owner=helm is refused",
        "helm-owner-label",
    ),
    rejected(
        changed(ES, spec__target={"annotations": {"kubernetes.io/service-account.name": "default"}}),
        "spec.target.annotations",
        "target.annotations key 'kubernetes.io/service-account.name' is refused",
        "sa-annotation",
    ),
]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    BAD_EXTERNAL_SECRETS + BAD_STORES + BAD_TARGETS + BAD_CLUSTER_EXTERNAL_SECRETS,
)
def test_bad_spec_is_rejected_at_apply_with_field_and_reason(
    cluster: Cluster,
    namespace: str,
    cluster_scoped: str,
    tmp_path: Path,
    body: dict[str, Any],
    field: str,
    message: str,
) -> None:
    with pytest.raises(RuntimeError) as refused:
        apply(cluster, tmp_path, namespace, named(body, cluster_scoped))
    output = str(refused.value)
    assert f"{field}: " in output
    assert message in output


def test_misspelt_field_is_rejected_not_silently_dropped(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    with pytest.raises(RuntimeError, match=r'unknown field "spec\.refreshinterval"'):
        apply(cluster, tmp_path, namespace, changed(ES, spec__refreshinterval="5m"))


@pytest.mark.parametrize("body", GOOD_STORES)
def test_good_store_is_accepted(
    cluster: Cluster, namespace: str, cluster_scoped: str, tmp_path: Path, body: dict[str, Any]
) -> None:
    body = named(body, cluster_scoped)
    apply(cluster, tmp_path, namespace, body)
    stored = get(cluster, namespace, body["kind"].lower(), body["metadata"]["name"])
    assert stored["spec"]["provider"].keys() == body["spec"]["provider"].keys()


@pytest.mark.parametrize("interval", ["0", "0s", "30s", "5m", "1h30m", "1.5h", "250ms", "2h45m30s"])
def test_every_go_duration_is_a_valid_refresh_interval(
    cluster: Cluster, namespace: str, tmp_path: Path, interval: str
) -> None:
    apply(cluster, tmp_path, namespace, changed(ES, spec__refreshInterval=interval))
    assert get(cluster, namespace, "externalsecret", "db-creds")["spec"]["refreshInterval"] == interval


def test_minimal_external_secret_gets_the_documented_defaults(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    apply(cluster, tmp_path, namespace, ES)
    spec = get(cluster, namespace, "externalsecret", "db-creds")["spec"]
    assert spec["storeRef"] == {"name": "fake", "kind": "SecretStore"}
    assert spec["refreshInterval"] == "1h"
    assert spec["target"] == {"creationPolicy": "Owner", "deletionPolicy": "Retain"}


def test_vault_store_gets_the_documented_defaults(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    body = changed(
        store(SS, "vault", VAULT),
        spec__provider__vault__auth={"appRole": {"roleId": "r", "secretRef": SECRET_REF}},
    )
    apply(cluster, tmp_path, namespace, body)
    vault = get(cluster, namespace, "secretstore", "store")["spec"]["provider"]["vault"]
    assert (vault["path"], vault["version"]) == ("secret", "v2")
    assert vault["auth"]["appRole"]["path"] == "approle"
    body = changed(
        body,
        spec__provider__vault__auth={"kubernetes": {"role": "r", "serviceAccountRef": {"name": "a"}}},
    )
    apply(cluster, tmp_path, namespace, body)
    vault = get(cluster, namespace, "secretstore", "store")["spec"]["provider"]["vault"]
    assert vault["auth"]["kubernetes"]["mountPath"] == "kubernetes"


def test_examples_are_accepted_and_listed_with_their_columns(cluster: Cluster, namespace: str) -> None:
    cluster.run_kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        str(EXAMPLES / "fake-store.yaml"),
        "-f",
        str(EXAMPLES / "externalsecret.yaml"),
    )
    header, row = cluster.run_kubectl("get", "-n", namespace, "vses").splitlines()
    assert header.split() == ["NAME", "STORE", "REFRESH", "READY", "REASON", "LAST", "SYNC", "AGE"]
    assert row.split()[:3] == ["db-creds", "fake", "5m"]
    stores = cluster.run_kubectl("get", "-n", namespace, "vaultsync").splitlines()
    assert any(line.startswith("secretstore.vaultsync.io/fake") for line in stores)


def test_the_cluster_external_secret_example_is_accepted_and_listed_with_its_columns(
    cluster: Cluster, cluster_scoped: str, tmp_path: Path
) -> None:
    body = yaml.safe_load((EXAMPLES / "cluster-external-secret.yaml").read_text())
    manifest = tmp_path / "ces.json"
    manifest.write_text(json.dumps(named(body, cluster_scoped)))
    cluster.run_kubectl("apply", "-f", str(manifest))
    header, row = cluster.run_kubectl("get", "vces", cluster_scoped).splitlines()
    assert header.split() == ["NAME", "STORE", "READY", "REASON", "AGE"]
    assert row.split()[:2] == [cluster_scoped, "shared"]
    stored = json.loads(cluster.run_kubectl("get", "vces", cluster_scoped, "-o", "json"))
    # ExternalSecret's defaults are filled in under externalSecretSpec too.
    assert stored["spec"]["externalSecretSpec"]["refreshPolicy"] == "Periodic"
    assert stored["spec"]["externalSecretSpec"]["target"]["creationPolicy"] == "Owner"


def test_status_the_operator_writes_is_kept_whole(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    """The status schema is structural, so a field missing from it would be pruned silently."""
    status = {
        "observedGeneration": 1,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Synced",
                "message": "Secret db-creds written from 1 remote value(s)",
                "lastTransitionTime": "2026-11-26T08:00:00Z",
            }
        ],
        "syncedAt": "2026-11-26T08:00:00Z",
        "nextRefreshAt": "2026-11-26T09:00:00Z",
        "remoteVersions": {"production/database": "3"},
        "dataHMAC": "hmac-sha256:00ff",
        "forceSyncHandled": "2026-11-26",
    }
    apply(cluster, tmp_path, namespace, ES)
    cluster.run_kubectl(
        "patch",
        "-n",
        namespace,
        "externalsecret",
        "db-creds",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )
    assert get(cluster, namespace, "externalsecret", "db-creds")["status"] == status
    row = cluster.run_kubectl("get", "-n", namespace, "vses", "--no-headers").split()
    assert row[:5] == ["db-creds", "fake", "1h", "True", "Synced"]

    store_status = {
        "observedGeneration": 1,
        "provider": "fake",
        "conditions": [dict(status["conditions"][0], reason="Valid")],
    }
    apply(cluster, tmp_path, namespace, store(SS, "fake", FAKE))
    cluster.run_kubectl(
        "patch",
        "-n",
        namespace,
        "secretstore",
        "store",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": store_status}),
    )
    assert get(cluster, namespace, "secretstore", "store")["status"] == store_status
    assert cluster.run_kubectl("get", "-n", namespace, "vss", "--no-headers").split()[:4] == [
        "store",
        "fake",
        "True",
        "Valid",
    ]


# -- Endpoint fields take an origin only (see vaultsync.origins) -------------------------------

ENDPOINTS = [
    ("vault", VAULT, "server"),
    ("aws", AWS, "endpoint"),
    ("azurekv", AZURE, "vaultUrl"),
    ("azurekv", AZURE, "authorityHost"),
]
BAD_ORIGINS = {
    "path": "https://vault.example.com/v1/anything",
    "fragment": "http://10.0.0.5:8080/steal#",
    "query": "https://vault.example.com?x=1",
    "userinfo": "https://vault.example.com@10.0.0.5",
    "space": "https://vault.example.com ",
    "newline": "https://vault.example.com\n",
    "control character": "https://vault.example.com\u0007",
    "non-http scheme": "ftp://vault.example.com",
    "no scheme": "vault.example.com:8200",
    "port out of range": "https://vault.example.com:65536",
    "overlong": "https://" + "a" * 300 + ".com",
}
GOOD_ORIGINS = ["https://vault.example.com", "https://vault.example.com:8200/", "https://[fd00::1]:8200"]


def dry_run(cluster: Cluster, tmp_path: Path, namespace: str, bodies: list[dict[str, Any]]) -> str:
    """Server-side dry-run apply of many objects at once; kubectl's output, whether it failed or not."""
    manifest = tmp_path / "objects.json"
    manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": bodies}))
    try:
        return cluster.run_kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(manifest))
    except RuntimeError as failed:
        return str(failed)


@pytest.mark.parametrize("kind", [SS, CSS])
@pytest.mark.parametrize(("provider", "config", "field"), ENDPOINTS, ids=[e[2] for e in ENDPOINTS])
def test_an_endpoint_that_is_not_an_origin_is_rejected_at_apply(
    cluster: Cluster,
    namespace: str,
    tmp_path: Path,
    kind: str,
    provider: str,
    config: dict[str, Any],
    field: str,
) -> None:
    bodies = []
    for i, value in enumerate(BAD_ORIGINS.values()):
        body = changed(store(kind, provider, config), **{f"spec__provider__{provider}__{field}": value})
        bodies.append(changed(body, metadata__name=f"{namespace}-bad-{i}"))
    output = dry_run(cluster, tmp_path, namespace, bodies)
    for i, form in enumerate(BAD_ORIGINS):
        errors = [line for line in output.splitlines() if f'"{namespace}-bad-{i}" is invalid' in line]
        assert errors, f"{form}: accepted\n{output}"
        assert f"spec.provider.{provider}.{field}: " in errors[0], form
        assert "must be an origin" in errors[0] or "Too long" in errors[0], errors[0]
    assert "created (server dry run)" not in output


@pytest.mark.parametrize("kind", [SS, CSS])
@pytest.mark.parametrize(("provider", "config", "field"), ENDPOINTS, ids=[e[2] for e in ENDPOINTS])
def test_an_origin_endpoint_is_accepted(
    cluster: Cluster,
    namespace: str,
    tmp_path: Path,
    kind: str,
    provider: str,
    config: dict[str, Any],
    field: str,
) -> None:
    bodies = []
    for i, value in enumerate(GOOD_ORIGINS):
        body = changed(store(kind, provider, config), **{f"spec__provider__{provider}__{field}": value})
        bodies.append(changed(body, metadata__name=f"{namespace}-good-{i}"))
    output = dry_run(cluster, tmp_path, namespace, bodies)
    assert output.count("created (server dry run)") == len(GOOD_ORIGINS), output


@pytest.mark.parametrize("region", ["us-east-1.evil.example.com#", "us-east-1/x", "US-EAST-1"])
def test_an_aws_region_that_is_not_a_region_name_is_rejected_at_apply(
    cluster: Cluster, namespace: str, tmp_path: Path, region: str
) -> None:
    with pytest.raises(RuntimeError, match=r"spec\.provider\.aws\.region: Invalid value"):
        apply(
            cluster, tmp_path, namespace, changed(store(SS, "aws", AWS), spec__provider__aws__region=region)
        )


@pytest.mark.parametrize("tenant", ["..", "tenant/../other", "-tenant"])
def test_an_azure_tenant_that_is_not_an_id_or_domain_is_rejected_at_apply(
    cluster: Cluster, namespace: str, tmp_path: Path, tenant: str
) -> None:
    with pytest.raises(RuntimeError, match=r"spec\.provider\.azurekv\.tenantId: Invalid value"):
        apply(
            cluster,
            tmp_path,
            namespace,
            changed(store(SS, "azurekv", AZURE), spec__provider__azurekv__tenantId=tenant),
        )
