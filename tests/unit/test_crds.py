"""The CRDs in crds/ say exactly what the API of docs/api.md says, and a server will accept them.

These checks need no API server: names, columns, enums and defaults are read
from the YAML, and the schema is walked to prove it is structural and
documented. tests/e2e/test_crd_validation.py proves the CEL rules on a real one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

CRD_DIR = Path(__file__).resolve().parents[2] / "crds"
GROUP = "vaultsync.io"
VERSION = "v1alpha1"
ESO_SHORT_NAMES = {"es", "ss", "css", "ces"}

NAMES = {
    "externalsecrets.yaml": ("ExternalSecret", "externalsecrets", ["vses"], "Namespaced"),
    "secretstores.yaml": ("SecretStore", "secretstores", ["vss"], "Namespaced"),
    "clustersecretstores.yaml": (
        "ClusterSecretStore",
        "clustersecretstores",
        ["vcss"],
        "Cluster",
    ),
    "clusterexternalsecrets.yaml": (
        "ClusterExternalSecret",
        "clusterexternalsecrets",
        ["vces"],
        "Cluster",
    ),
}

READY = '.status.conditions[?(@.type=="Ready")].status'
REASON = '.status.conditions[?(@.type=="Ready")].reason'
AGE = ("Age", "date", ".metadata.creationTimestamp")
STORE_COLUMNS = [
    ("Provider", "string", ".status.provider"),
    ("Ready", "string", READY),
    ("Reason", "string", REASON),
    AGE,
]
COLUMNS = {
    "externalsecrets.yaml": [
        ("Store", "string", ".spec.storeRef.name"),
        ("Refresh", "string", ".spec.refreshInterval"),
        ("Ready", "string", READY),
        ("Reason", "string", REASON),
        ("Last Sync", "date", ".status.syncedAt"),
        AGE,
    ],
    "secretstores.yaml": STORE_COLUMNS,
    "clustersecretstores.yaml": STORE_COLUMNS,
    "clusterexternalsecrets.yaml": [
        ("Store", "string", ".spec.externalSecretSpec.storeRef.name"),
        ("Ready", "string", READY),
        ("Reason", "string", REASON),
        AGE,
    ],
}

PROVIDER = "spec.provider"
DECODING = ["None", "Base64", "Base64URL", "Auto"]
ENUMS_AND_DEFAULTS = [
    (
        "externalsecrets.yaml",
        "spec.storeRef.kind",
        ["SecretStore", "ClusterSecretStore"],
        "SecretStore",
    ),
    ("externalsecrets.yaml", "spec.target.creationPolicy", ["Owner", "Merge", "Orphan"], "Owner"),
    ("externalsecrets.yaml", "spec.target.deletionPolicy", ["Retain", "Delete"], "Retain"),
    ("externalsecrets.yaml", "spec.refreshInterval", None, "1h"),
    ("externalsecrets.yaml", "spec.refreshPolicy", ["Periodic", "OnChange", "CreatedOnce"], "Periodic"),
    ("externalsecrets.yaml", "spec.data[].remoteRef.decodingStrategy", DECODING, "None"),
    ("externalsecrets.yaml", "spec.dataFrom[].extract.decodingStrategy", DECODING, "None"),
    ("externalsecrets.yaml", "spec.dataFrom[].find.decodingStrategy", DECODING, "None"),
    ("externalsecrets.yaml", "spec.dataFrom[].extract.conversionStrategy", ["Default", "Unicode"], "Default"),
    ("externalsecrets.yaml", "spec.dataFrom[].find.conversionStrategy", ["Default", "Unicode"], "Default"),
    ("externalsecrets.yaml", "spec.target.template.mergePolicy", ["Replace", "Merge"], "Replace"),
    ("externalsecrets.yaml", "spec.target.template.engineVersion", ["v2"], "v2"),
    ("secretstores.yaml", f"{PROVIDER}.vault.version", ["v1", "v2"], "v2"),
    ("clustersecretstores.yaml", f"{PROVIDER}.vault.version", ["v1", "v2"], "v2"),
]

# Field names of the API (docs/api.md; External Secrets Operator's names), checked leaf by leaf so
# a typo in camelCase fails here.
SELECTOR = {"name", "key", "namespace"}
SERVICE_ACCOUNT = {"name", "namespace", "audiences"}
DESIGN_FIELDS = {
    "externalsecrets.yaml": {
        "spec": {"storeRef", "refreshInterval", "refreshPolicy", "target", "data", "dataFrom"},
        "spec.storeRef": {"name", "kind"},
        "spec.target": {
            "name",
            "creationPolicy",
            "deletionPolicy",
            "type",
            "labels",
            "annotations",
            "template",
            "immutable",
        },
        "spec.target.template": {
            "engineVersion",
            "mergePolicy",
            "type",
            "metadata",
            "delimiters",
            "data",
            "templateFrom",
        },
        "spec.target.template.metadata": {"labels", "annotations"},
        "spec.target.template.templateFrom[]": {"configMap", "secret", "literal", "target"},
        "spec.target.template.templateFrom[].configMap": {"name", "namespace", "items"},
        "spec.target.template.templateFrom[].configMap.items[]": {"key", "templateAs"},
        "spec.target.template.templateFrom[].secret": {"name", "namespace", "items"},
        "spec.target.template.templateFrom[].secret.items[]": {"key", "templateAs"},
        "spec.data[]": {"secretKey", "remoteRef", "sourceRef"},
        "spec.data[].remoteRef": {"key", "property", "version", "decodingStrategy"},
        "spec.data[].sourceRef": {"storeRef"},
        "spec.data[].sourceRef.storeRef": {"name", "kind"},
        "spec.dataFrom[]": {"extract", "find", "rewrite", "sourceRef"},
        "spec.dataFrom[].extract": {"key", "version", "conversionStrategy", "decodingStrategy"},
        "spec.dataFrom[].find": {"path", "name", "tags", "conversionStrategy", "decodingStrategy"},
        "spec.dataFrom[].find.name": {"regexp"},
        "spec.dataFrom[].rewrite[]": {"regexp", "transform"},
        "spec.dataFrom[].rewrite[].regexp": {"source", "target"},
        "spec.dataFrom[].rewrite[].transform": {"template"},
        "spec.dataFrom[].sourceRef.storeRef": {"name", "kind"},
        "status": {
            "observedGeneration",
            "conditions",
            "syncedAt",
            "nextRefreshAt",
            "remoteVersions",
            "dataHMAC",
            "forceSyncHandled",
        },
        "status.conditions[]": {"type", "status", "reason", "message", "lastTransitionTime"},
    },
    "clusterexternalsecrets.yaml": {
        "spec": {
            "externalSecretSpec",
            "externalSecretName",
            "externalSecretMetadata",
            "namespaces",
            "namespaceSelectors",
            "refreshTime",
        },
        "spec.externalSecretMetadata": {"labels", "annotations"},
        "spec.namespaceSelectors[]": {"matchLabels", "matchExpressions"},
        "status": {
            "observedGeneration",
            "externalSecretName",
            "provisionedNamespaces",
            "failedNamespaces",
            "conditions",
        },
        "status.failedNamespaces[]": {"namespace", "reason"},
    },
    "secretstores.yaml": {
        "spec": {"provider", "callsPerMinute"},
        PROVIDER: {"aws", "vault", "azurekv", "fake"},
        f"{PROVIDER}.aws": {"region", "service", "endpoint", "auth"},
        f"{PROVIDER}.aws.auth": {"secretRef", "jwt"},
        f"{PROVIDER}.aws.auth.secretRef": {"accessKeyId", "secretAccessKey"},
        f"{PROVIDER}.aws.auth.secretRef.accessKeyId": SELECTOR,
        f"{PROVIDER}.aws.auth.secretRef.secretAccessKey": SELECTOR,
        f"{PROVIDER}.aws.auth.jwt": {"serviceAccountRef", "roleArn"},
        f"{PROVIDER}.aws.auth.jwt.serviceAccountRef": SERVICE_ACCOUNT,
        f"{PROVIDER}.vault": {"server", "path", "version", "namespace", "caBundle", "auth"},
        f"{PROVIDER}.vault.auth": {"token", "appRole", "kubernetes"},
        f"{PROVIDER}.vault.auth.token": {"secretRef"},
        f"{PROVIDER}.vault.auth.token.secretRef": SELECTOR,
        f"{PROVIDER}.vault.auth.appRole": {"path", "roleId", "secretRef"},
        f"{PROVIDER}.vault.auth.appRole.secretRef": SELECTOR,
        f"{PROVIDER}.vault.auth.kubernetes": {"mountPath", "role", "serviceAccountRef"},
        f"{PROVIDER}.vault.auth.kubernetes.serviceAccountRef": SERVICE_ACCOUNT,
        f"{PROVIDER}.azurekv": {
            "vaultUrl",
            "tenantId",
            "authorityHost",
            "caBundle",
            "verifyChallengeResource",
            "auth",
        },
        f"{PROVIDER}.azurekv.auth": {"clientSecret", "workloadIdentity", "managedIdentity"},
        f"{PROVIDER}.azurekv.auth.clientSecret": {"clientId", "secretRef"},
        f"{PROVIDER}.azurekv.auth.clientSecret.secretRef": SELECTOR,
        f"{PROVIDER}.azurekv.auth.workloadIdentity": {"clientId", "serviceAccountRef"},
        f"{PROVIDER}.azurekv.auth.workloadIdentity.serviceAccountRef": SERVICE_ACCOUNT,
        f"{PROVIDER}.azurekv.auth.managedIdentity": {"clientId"},
        f"{PROVIDER}.fake.data[]": {"key", "value", "version"},
        "status": {"observedGeneration", "provider", "conditions"},
    },
    "clustersecretstores.yaml": {
        "spec": {"provider", "conditions", "callsPerMinute"},
        "spec.conditions[]": {"namespaces", "namespaceSelector"},
        "spec.conditions[].namespaceSelector": {"matchLabels", "matchExpressions"},
        "spec.conditions[].namespaceSelector.matchExpressions[]": {"key", "operator", "values"},
    },
}


def load(name: str) -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load((CRD_DIR / name).read_text())
    return crd


def version_of(crd: dict[str, Any]) -> dict[str, Any]:
    (version,) = crd["spec"]["versions"]
    return dict(version)


def root_schema(name: str) -> dict[str, Any]:
    return dict(version_of(load(name))["schema"]["openAPIV3Schema"])


def node_at(schema: dict[str, Any], dotted: str) -> dict[str, Any]:
    """The schema of `spec.data[].remoteRef`-style paths."""
    for part in dotted.split("."):
        schema = schema["properties"][part.removesuffix("[]")]
        if part.endswith("[]"):
            schema = schema["items"]
    return schema


def walk(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its path; `[]` for items, `{}` for map values."""
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}" if path else name)
    if "items" in schema:
        yield from walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}{{}}")


def rules() -> Iterator[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """Every CEL rule: file, path of the node it sits on, that node, the rule."""
    for name in NAMES:
        for path, node in walk(root_schema(name)):
            for rule in node.get("x-kubernetes-validations", []):
                yield name, path, node, rule


RULES = [pytest.param(*found, id=f"{found[0]}:{found[1]}") for found in rules()]


@pytest.mark.parametrize("name", sorted(NAMES))
def test_crd_is_a_served_storage_version_of_the_api_group(name: str) -> None:
    crd = load(name)
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == f"{crd['spec']['names']['plural']}.{GROUP}"
    assert crd["spec"]["group"] == GROUP
    version = version_of(crd)
    assert (version["name"], version["served"], version["storage"]) == (VERSION, True, True)
    assert version["subresources"] == {"status": {}}


@pytest.mark.parametrize("name", sorted(NAMES))
def test_names_scope_and_category_are_ours(name: str) -> None:
    kind, plural, short_names, scope = NAMES[name]
    crd = load(name)
    names = crd["spec"]["names"]
    assert names["kind"] == kind
    assert names["listKind"] == f"{kind}List"
    assert names["plural"] == plural
    assert names["singular"] == kind.lower()
    assert names["shortNames"] == short_names
    assert names["categories"] == ["vaultsync"]
    assert crd["spec"]["scope"] == scope


def test_short_names_do_not_collide_with_external_secrets_operator() -> None:
    ours = [short for name in NAMES for short in NAMES[name][2]]
    assert len(ours) == len(set(ours))
    assert not set(ours) & ESO_SHORT_NAMES


@pytest.mark.parametrize("name", sorted(NAMES))
def test_printer_columns_are_exactly_the_documented_set(name: str) -> None:
    columns = version_of(load(name))["additionalPrinterColumns"]
    assert [(c["name"], c["type"], c["jsonPath"]) for c in columns] == COLUMNS[name]


@pytest.mark.parametrize("name", sorted(NAMES))
def test_schema_is_structural(name: str) -> None:
    """Every node has a type; objects list properties or a value schema, arrays their items."""
    schema = root_schema(name)
    assert set(schema["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}
    assert schema["required"] == ["spec"]
    for path, node in walk(schema):
        assert node.get("type") in {"object", "array", "string", "integer", "boolean"}, path
        if node["type"] == "array":
            assert "items" in node, path
        if node["type"] == "object" and path != "metadata":
            assert "properties" in node or "additionalProperties" in node, path


@pytest.mark.parametrize("name", sorted(NAMES))
def test_unknown_fields_are_preserved_only_with_a_reason_beside_it(name: str) -> None:
    lines = (CRD_DIR / name).read_text().splitlines()
    for number, line in enumerate(lines):
        if "x-kubernetes-preserve-unknown-fields" in line:
            assert "#" in line or lines[number - 1].strip().startswith("#"), number + 1


@pytest.mark.parametrize("name", sorted(NAMES))
def test_every_field_of_spec_and_status_is_described(name: str) -> None:
    undocumented = [
        path
        for path, node in walk(root_schema(name))
        if path.startswith(("spec", "status"))
        and not path.endswith(("[]", "{}"))
        and not node.get("description")
    ]
    assert undocumented == []


@pytest.mark.parametrize(
    ("name", "parent_path", "fields"),
    [(name, path, fields) for name, table in DESIGN_FIELDS.items() for path, fields in table.items()],
)
def test_fields_are_named_as_in_the_design(name: str, parent_path: str, fields: set[str]) -> None:
    assert set(node_at(root_schema(name), parent_path)["properties"]) == fields


@pytest.mark.parametrize(("name", "path", "enum", "default"), ENUMS_AND_DEFAULTS)
def test_enums_and_defaults(name: str, path: str, enum: list[str] | None, default: str) -> None:
    node = node_at(root_schema(name), path)
    assert node.get("enum") == enum
    assert node["default"] == default


def test_target_defaults_to_empty_so_its_policies_are_always_filled_in() -> None:
    assert node_at(root_schema("externalsecrets.yaml"), "spec.target")["default"] == {}


def test_both_store_kinds_share_one_provider_schema() -> None:
    """A ClusterSecretStore lacks only the rules that keep a SecretStore off the operator's identity."""
    namespaced = node_at(root_schema("secretstores.yaml"), PROVIDER)
    cluster = node_at(root_schema("clustersecretstores.yaml"), PROVIDER)
    assert namespaced["properties"] == cluster["properties"]
    exactly_one, *namespaced_only = namespaced["x-kubernetes-validations"]
    assert cluster["x-kubernetes-validations"] == [exactly_one]
    assert {rule["fieldPath"] for rule in namespaced_only} == {
        ".aws.auth",
        ".vault.auth",
        ".vault.auth.kubernetes.serviceAccountRef",
        ".azurekv.auth.managedIdentity",
    }
    assert (
        root_schema("secretstores.yaml")["properties"]["status"]
        == root_schema("clustersecretstores.yaml")["properties"]["status"]
    )


def test_a_condition_is_documented_as_the_code_matches_it() -> None:
    """namespaces OR namespaceSelector (models.NamespaceCondition.allows), not AND."""
    entry = " ".join(
        node_at(root_schema("clustersecretstores.yaml"), "spec.conditions[]")["description"].split()
    )
    assert "listed in namespaces OR selected by namespaceSelector" in entry
    assert "namespaceSelector {} matches every namespace" in entry
    api = " ".join((CRD_DIR.parent / "docs" / "api.md").read_text().split())
    assert "listed in `namespaces` **or** selected by `namespaceSelector`" in api
    assert "`namespaceSelector: {}` matches every namespace" in api


@pytest.mark.parametrize(("name", "path", "node", "rule"), RULES)
def test_every_cel_rule_has_a_message_naming_its_field(
    name: str, path: str, node: dict[str, Any], rule: dict[str, Any]
) -> None:
    field = rule.get("fieldPath", "").lstrip(".") or re.sub(r"\W", "", path.rsplit(".", 1)[-1])
    assert field in rule["message"]


@pytest.mark.parametrize(("name", "path", "node", "rule"), [p for p in RULES if "fieldPath" in p.values[3]])
def test_every_field_path_names_a_field_below_its_rule(
    name: str, path: str, node: dict[str, Any], rule: dict[str, Any]
) -> None:
    node_at(node, rule["fieldPath"].lstrip("."))


@pytest.mark.parametrize(("name", "path", "node", "rule"), RULES)
def test_cel_rules_that_scan_text_or_lists_have_bounds(
    name: str, path: str, node: dict[str, Any], rule: dict[str, Any]
) -> None:
    """The API server refuses a rule whose worst-case cost, estimated from maxLength,
    maxItems and maxProperties, exceeds its budget."""
    scanned_children = re.findall(r"self\.(\w+)\.all\(", rule["rule"])
    for child in scanned_children:  # a rule on an object scanning its own lists
        assert node["properties"][child].get("maxItems"), child
    if ".matches(" in rule["rule"] or (".all(" in rule["rule"] and not scanned_children):
        assert node.get("maxLength") or node.get("maxItems") or node.get("maxProperties")
