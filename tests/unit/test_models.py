"""ExternalSecret and store bodies parse into typed models with defaults; bad input names the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from vaultsync.constants import Reason
from vaultsync.errors import InvalidSpec, PermanentError
from vaultsync.models import LabelSelector, NamespaceCondition, parse_external_secret, parse_store_spec

METADATA = {"name": "db-creds", "namespace": "shop", "uid": "uid-1", "generation": 4}


def body(spec: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"metadata": dict(METADATA), "spec": spec, **extra}


def valid_spec() -> dict[str, Any]:
    return {
        "storeRef": {"name": "aws"},
        "data": [
            {"secretKey": "user", "remoteRef": {"key": "prod/db", "property": "user"}},
            {"secretKey": "password", "remoteRef": {"key": "prod/db", "property": "password"}},
            {"secretKey": "token", "remoteRef": {"key": "prod/token", "version": "3"}},
        ],
        "dataFrom": [{"extract": {"key": "prod/api"}}, {"extract": {"key": "prod/more"}}],
    }


def invalid(spec: dict[str, Any]) -> InvalidSpec:
    with pytest.raises(InvalidSpec) as caught:
        parse_external_secret(body(spec))
    return caught.value


def test_a_minimal_external_secret_gets_the_documented_defaults() -> None:
    es = parse_external_secret(body({"storeRef": {"name": "aws"}}))
    assert es.spec.store_ref.kind == "SecretStore"
    assert es.spec.refresh_interval == "1h"
    assert es.spec.refresh_seconds == 3600.0
    assert es.spec.target.creation_policy == "Owner"
    assert es.spec.target.deletion_policy == "Retain"
    assert es.spec.target.type == "Opaque"
    assert es.spec.target.template is None
    assert es.spec.data == []
    assert es.spec.data_from == []


def test_the_target_name_defaults_to_the_external_secret_name() -> None:
    assert parse_external_secret(body({"storeRef": {"name": "aws"}})).target_name == "db-creds"
    named = parse_external_secret(body({"storeRef": {"name": "aws"}, "target": {"name": "other"}}))
    assert named.target_name == "other"


def test_a_template_gets_the_default_delimiters() -> None:
    es = parse_external_secret(
        body({"storeRef": {"name": "aws"}, "target": {"template": {"data": {"a": "b"}}}})
    )
    assert es.spec.target.template is not None
    assert es.spec.target.template.delimiters == ("{{", "}}")


def test_metadata_and_status_are_carried_over() -> None:
    es = parse_external_secret(
        {
            "metadata": {**METADATA, "annotations": {"vaultsync.io/force-sync": "1"}},
            "spec": valid_spec(),
            "status": {"dataHMAC": "hmac-sha256:ab"},
        }
    )
    assert (es.name, es.namespace, es.uid, es.generation) == ("db-creds", "shop", "uid-1", 4)
    assert es.annotations == {"vaultsync.io/force-sync": "1"}
    assert es.status == {"dataHMAC": "hmac-sha256:ab"}


def test_every_documented_field_is_read_from_its_camel_case_name() -> None:
    spec = {
        "storeRef": {"name": "vault", "kind": "ClusterSecretStore"},
        "refreshInterval": "1h30m",
        "target": {
            "name": "app",
            "creationPolicy": "Merge",
            "deletionPolicy": "Delete",
            "type": "kubernetes.io/tls",
            "labels": {"team": "shop"},
            "annotations": {"note": "x"},
            "template": {"delimiters": ["<<", ">>"], "data": {"tls.crt": "<< cert >>"}},
        },
        **{k: v for k, v in valid_spec().items() if k != "storeRef"},
    }
    es = parse_external_secret(body(spec))
    assert es.spec.store_ref.kind == "ClusterSecretStore"
    assert es.spec.refresh_seconds == 5400.0
    target = es.spec.target
    assert (target.name, target.creation_policy, target.deletion_policy) == ("app", "Merge", "Delete")
    assert (target.type, target.labels, target.annotations) == (
        "kubernetes.io/tls",
        {"team": "shop"},
        {"note": "x"},
    )
    assert target.template is not None
    assert target.template.delimiters == ("<<", ">>")
    assert target.template.data == {"tls.crt": "<< cert >>"}
    assert [
        (d.secret_key, d.remote_ref.key, d.remote_ref.property, d.remote_ref.version) for d in es.spec.data
    ] == [
        ("user", "prod/db", "user", ""),
        ("password", "prod/db", "password", ""),
        ("token", "prod/token", "", "3"),
    ]
    assert [d.extract.key for d in es.spec.data_from] == ["prod/api", "prod/more"]


def test_a_refresh_interval_of_zero_means_sync_once() -> None:
    es = parse_external_secret(body({"storeRef": {"name": "aws"}, "refreshInterval": "0"}))
    assert es.spec.refresh_seconds == 0.0


def _set(path: str, value: Any) -> dict[str, Any]:
    """A valid spec with one field (dotted path, list indexes as numbers) set or deleted (value ...)."""
    spec = copy.deepcopy(valid_spec())
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node: Any = spec
    for part in parents:
        if isinstance(part, str) and part not in node:
            node[part] = {}
        node = node[part]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return spec


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("data.2.remoteRef.key", "", "spec.data[2].remoteRef.key"),
        ("data.2.remoteRef.key", ..., "spec.data[2].remoteRef.key"),
        ("data.1.remoteRef", ..., "spec.data[1].remoteRef"),
        ("data.0.secretKey", "bad key", "spec.data[0].secretKey"),
        ("data.0.secretKey", "x" * 254, "spec.data[0].secretKey"),
        ("data.0.secretKey", ..., "spec.data[0].secretKey"),
        ("dataFrom.1.extract.key", ..., "spec.dataFrom[1].extract.key"),
        ("refreshInterval", "1d", "spec.refreshInterval"),
        ("refreshInterval", "-5m", "spec.refreshInterval"),
        ("refreshInterval", "99999999999h", "spec.refreshInterval"),
        ("refreshInterval", "8785h", "spec.refreshInterval"),
        ("refreshInterval", "9" * 400 + "h", "spec.refreshInterval"),
        ("data", [{"secretKey": f"k{i}", "remoteRef": {"key": "k"}} for i in range(513)], "spec.data"),
        ("dataFrom", [{"extract": {"key": "k"}}] * 65, "spec.dataFrom"),
        ("data.0.remoteRef.key", "k" * 2049, "spec.data[0].remoteRef.key"),
        ("data.0.remoteRef.property", "p" * 1025, "spec.data[0].remoteRef.property"),
        ("data.0.remoteRef.version", "v" * 257, "spec.data[0].remoteRef.version"),
        ("dataFrom.0.extract.key", "k" * 2049, "spec.dataFrom[0].extract.key"),
        ("target.labels", {f"l{i}": "v" for i in range(65)}, "spec.target.labels"),
        ("target.annotations", {f"a{i}": "v" for i in range(65)}, "spec.target.annotations"),
        ("target.annotations", {"a": "v" * 4097}, "spec.target.annotations.a"),
        ("target.creationPolicy", "Own", "spec.target.creationPolicy"),
        ("target.deletionPolicy", "Keep", "spec.target.deletionPolicy"),
        ("target.labels", {"team": 5}, "spec.target.labels.team"),
        ("target.template", {"delimiters": ["<<", "<<"]}, "spec.target.template.delimiters"),
        ("target.template", {"delimiters": ["", ">>"]}, "spec.target.template.delimiters"),
        ("storeRef.kind", "Store", "spec.storeRef.kind"),
        ("storeRef.name", "", "spec.storeRef.name"),
        ("storeRef", ..., "spec.storeRef"),
    ],
)
def test_a_bad_field_is_named_exactly_in_the_error(path: str, value: Any, field: str) -> None:
    exc = invalid(_set(path, value))
    assert str(exc).startswith(f"{field}: ")
    assert exc.reason is Reason.INVALID_SPEC


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        pytest.param("data.0.secretKey", ".", "spec.data[0].secretKey", id="secretKey-dot"),
        pytest.param("data.0.secretKey", "..", "spec.data[0].secretKey", id="secretKey-dot-dot"),
        pytest.param("data.0.secretKey", "..data", "spec.data[0].secretKey", id="secretKey-leading-dot-dot"),
        pytest.param(
            "target.template",
            {"data": {"bad key": "x"}},
            "spec.target.template.data",
            id="template-key-space",
        ),
        pytest.param(
            "target.template",
            {"data": {"..data": "x"}},
            "spec.target.template.data",
            id="template-key-dot-dot",
        ),
    ],
)
def test_a_secret_key_that_kubernetes_refuses_is_rejected_by_the_model_too(
    path: str, value: Any, field: str
) -> None:
    # The CRD's CEL rules reject these at apply time; the model is the second line.
    exc = invalid(_set(path, value))
    assert str(exc).startswith(field)


def test_the_longest_refresh_interval_is_a_year_and_it_does_not_overflow_a_timestamp() -> None:
    es = parse_external_secret(body({"storeRef": {"name": "aws"}, "refreshInterval": "8784h"}))
    assert es.spec.refresh_seconds == 366 * 24 * 3600.0
    message = str(invalid(_set("refreshInterval", "99999999999h")))
    assert "8784h" in message


def test_every_bad_field_is_named_not_only_the_first() -> None:
    spec = _set("refreshInterval", "soon")
    spec["target"] = {"creationPolicy": "Own"}
    message = str(invalid(spec))
    assert "spec.refreshInterval: " in message
    assert "spec.target.creationPolicy: " in message


def test_an_empty_spec_says_the_store_is_required() -> None:
    assert str(invalid({})) == (
        "spec.storeRef: Value error, required unless every entry of spec.data and spec.dataFrom "
        "names its store in sourceRef.storeRef"
    )


def test_an_error_names_the_field_but_does_not_repeat_its_value() -> None:
    marker = "Quokka-not-echoed"
    exc = invalid(_set("refreshInterval", marker))
    assert marker not in str(exc)
    exc = invalid(_set("target.creationPolicy", marker))
    assert marker not in str(exc)
    exc = invalid(_set("data.0.secretKey", f"{marker} !"))
    assert marker not in str(exc)


def test_an_invalid_spec_is_permanent() -> None:
    exc = invalid({})
    assert isinstance(exc, PermanentError)


def test_a_store_spec_parses_its_provider_and_conditions() -> None:
    store = parse_store_spec(
        {
            "spec": {
                "provider": {"fake": {"data": []}},
                "conditions": [{"namespaces": ["shop"], "namespaceSelector": {"matchLabels": {"team": "a"}}}],
            }
        }
    )
    assert store.provider == {"fake": {"data": []}}
    assert store.conditions[0].namespaces == ["shop"]
    assert store.conditions[0].namespace_selector == LabelSelector(match_labels={"team": "a"})


def test_a_store_without_a_provider_names_the_field() -> None:
    with pytest.raises(InvalidSpec, match=r"^spec\.provider: Field required$"):
        parse_store_spec({"spec": {}})


def test_a_bad_store_condition_names_its_field() -> None:
    spec = {
        "provider": {"fake": {}},
        "conditions": [{}, {"namespaceSelector": {"matchExpressions": [{"key": "a"}]}}],
    }
    with pytest.raises(InvalidSpec) as caught:
        parse_store_spec({"spec": spec})
    assert str(caught.value).startswith("spec.conditions[1].namespaceSelector.matchExpressions[0].operator: ")


# Label selectors and ClusterSecretStore conditions --------------------------------------------


def selector(raw: dict[str, Any]) -> LabelSelector:
    return LabelSelector.model_validate(raw)


@pytest.mark.parametrize(
    ("raw", "labels", "matches"),
    [
        ({}, {}, True),
        ({}, {"team": "a"}, True),
        ({"matchLabels": {"team": "a"}}, {"team": "a", "env": "prod"}, True),
        ({"matchLabels": {"team": "a"}}, {"team": "b"}, False),
        ({"matchLabels": {"team": "a"}}, {}, False),
        ({"matchLabels": {"team": "a", "env": "prod"}}, {"team": "a"}, False),
        (
            {"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "stg"]}]},
            {"env": "stg"},
            True,
        ),
        ({"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}]}, {"env": "dev"}, False),
        ({"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}]}, {}, False),
        (
            {"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]},
            {"env": "dev"},
            True,
        ),
        (
            {"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]},
            {"env": "prod"},
            False,
        ),
        ({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]}, {}, True),
        ({"matchExpressions": [{"key": "env", "operator": "Exists"}]}, {"env": ""}, True),
        ({"matchExpressions": [{"key": "env", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "env", "operator": "DoesNotExist"}]}, {}, True),
        ({"matchExpressions": [{"key": "env", "operator": "DoesNotExist"}]}, {"env": "x"}, False),
        (
            {
                "matchLabels": {"team": "a"},
                "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}],
            },
            {"team": "a", "env": "dev"},
            False,
        ),
    ],
)
def test_a_label_selector_matches_like_kubernetes(
    raw: dict[str, Any], labels: dict[str, str], matches: bool
) -> None:
    assert selector(raw).matches(labels) is matches


def condition(raw: dict[str, Any]) -> NamespaceCondition:
    return NamespaceCondition.model_validate(raw)


def test_a_condition_listing_namespaces_allows_only_those() -> None:
    allowed = condition({"namespaces": ["shop", "billing"]})
    assert allowed.allows("shop", {})
    assert allowed.allows("billing", {"team": "x"})
    assert not allowed.allows("other", {})


def test_a_condition_with_a_selector_allows_namespaces_whose_labels_match() -> None:
    allowed = condition({"namespaceSelector": {"matchLabels": {"vaultsync.io/allowed": "true"}}})
    assert allowed.allows("shop", {"vaultsync.io/allowed": "true"})
    assert not allowed.allows("shop", {"vaultsync.io/allowed": "false"})
    assert not allowed.allows("shop", {})


# ClusterSecretStore conditions mean what External Secrets Operator's mean: within one
# entry, `namespaces` OR `namespaceSelector`; across entries, any. docs/api.md says so.


def test_a_condition_with_both_fields_allows_a_namespace_matching_either() -> None:
    both = condition({"namespaces": ["shop"], "namespaceSelector": {"matchLabels": {"tier": "prod"}}})
    assert both.allows("shop", {})  # listed, not selected
    assert both.allows("billing", {"tier": "prod"})  # selected, not listed
    assert both.allows("shop", {"tier": "prod"})
    assert not both.allows("billing", {"tier": "dev"})  # neither


def test_an_empty_selector_allows_every_namespace() -> None:
    everyone = condition({"namespaceSelector": {}})
    assert everyone.allows("anything", {})
    assert everyone.allows("kube-system", {"kubernetes.io/metadata.name": "kube-system"})


def test_an_empty_namespace_list_allows_nothing() -> None:
    nobody = condition({"namespaces": []})
    assert not nobody.allows("shop", {})
    assert not nobody.allows("", {})


def test_an_empty_namespace_list_leaves_the_selector_to_decide() -> None:
    selected = condition({"namespaces": [], "namespaceSelector": {"matchLabels": {"tier": "prod"}}})
    assert selected.allows("shop", {"tier": "prod"})
    assert not selected.allows("shop", {})


def test_requiring_a_name_and_a_label_is_written_as_one_selector() -> None:
    """The documented way to AND a name with labels, since the two fields OR."""
    both = condition(
        {
            "namespaceSelector": {
                "matchLabels": {"tier": "prod"},
                "matchExpressions": [
                    {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["shop"]}
                ],
            }
        }
    )
    assert both.allows("shop", {"tier": "prod", "kubernetes.io/metadata.name": "shop"})
    assert not both.allows("shop", {"kubernetes.io/metadata.name": "shop"})
    assert not both.allows("billing", {"tier": "prod", "kubernetes.io/metadata.name": "billing"})


def test_a_namespace_name_is_matched_exactly_not_as_a_pattern() -> None:
    listed = condition({"namespaces": ["team-a"]})
    assert not listed.allows("evil-team-a", {})
    assert not listed.allows("team-a-evil", {})
    assert not listed.allows("TEAM-A", {})


def test_a_condition_with_neither_field_allows_nothing() -> None:
    """The CRD refuses it; an object from before that rule must still not open the store."""
    assert not condition({}).allows("shop", {"tier": "prod"})
