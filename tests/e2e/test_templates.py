"""Templates as External Secrets Operator defines them: templateFrom a ConfigMap or Secret of
the ExternalSecret's namespace (followed without a restart), mergePolicy, template.type and
template.metadata; and the refusals that keep a tenant to its own namespace."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from kubernetes.client import ApiException

from tests.e2e.conftest import Vaultsync, fake_entry
from tests.env.waiting import eventually

pytestmark = pytest.mark.e2e

DB = {"username": "shop", "password": "pw-one"}
DATA = [
    {"secretKey": "user", "remoteRef": {"key": "db", "property": "username"}},
    {"secretKey": "password", "remoteRef": {"key": "db", "property": "password"}},
]


def configmap(vs: Vaultsync, name: str, data: dict[str, str], namespace: str | None = None) -> Any:
    body = {"metadata": {"name": name}, "data": data}
    return vs.api.core.create_namespaced_config_map(namespace or vs.namespace, body)


def provider_reads(logs: str) -> int:
    return sum(1 for line in logs.splitlines() if '"provider read"' in line)


def test_template_from_a_configmap_renders_and_follows_its_changes_without_reading_again(
    vs: Vaultsync, operator: Any
) -> None:
    vs.fake_store("fake", [fake_entry("db", DB)])
    configmap(
        vs,
        "tpl",
        {
            "url": "postgres://{{ user }}:{{ password }}@db:5432/shop",
            "pairs": "app_user: '{{ user }}'\nport: 5432\n",
        },
    )
    vs.external_secret(
        "app",
        {
            "storeRef": {"name": "fake"},
            "data": DATA,
            "target": {
                "template": {
                    "mergePolicy": "Merge",
                    "templateFrom": [
                        {
                            "configMap": {
                                "name": "tpl",
                                "items": [{"key": "url"}, {"key": "pairs", "templateAs": "KeysAndValues"}],
                            }
                        },
                        {"literal": "literal_key: from-{{ user }}"},
                    ],
                    "data": {"port": "6432"},
                }
            },
        },
    )
    first = {
        "user": "shop",
        "password": "pw-one",
        "url": "postgres://shop:pw-one@db:5432/shop",
        "app_user": "shop",
        "port": "6432",  # template.data overrides templateFrom's keys, as in ESO
        "literal_key": "from-shop",
    }
    vs.wait_data("app", first)
    vs.wait_reason("app", "Synced")
    reads = provider_reads(operator.logs())
    vs.api.core.patch_namespaced_config_map(
        "tpl", vs.namespace, {"data": {"url": "mysql://{{ user }}@db/shop"}}
    )
    vs.wait_data("app", {**first, "url": "mysql://shop@db/shop"}, timeout=60)
    assert provider_reads(operator.logs()) == reads  # rendered again from the values held


def test_replace_type_and_metadata_come_from_the_template(vs: Vaultsync, operator: Any) -> None:
    vs.fake_store("fake", [fake_entry("db", DB)])
    vs.external_secret(
        "app",
        {
            "storeRef": {"name": "fake"},
            "data": DATA,
            "target": {
                "template": {
                    "type": "kubernetes.io/basic-auth",
                    "metadata": {"labels": {"team": "shop"}, "annotations": {"owner": "payments"}},
                    "data": {"username": "{{ user }}", "password": "{{ password }}"},
                }
            },
        },
    )
    vs.wait_data("app", {"username": "shop", "password": "pw-one"})  # Replace: only rendered keys
    secret = vs.secret("app")
    assert secret.type == "kubernetes.io/basic-auth"
    assert secret.metadata.labels["team"] == "shop"
    assert secret.metadata.annotations["owner"] == "payments"


def test_labels_and_annotations_are_templates_and_follow_their_configmap(
    vs: Vaultsync, operator: Any
) -> None:
    vs.fake_store("fake", [fake_entry("db", DB)])
    configmap(vs, "meta", {"tier": "gold-{{ user }}"})
    vs.external_secret(
        "app",
        {
            "storeRef": {"name": "fake"},
            "data": DATA,
            "target": {
                "template": {
                    "metadata": {"labels": {"user": "{{ user }}"}},
                    "templateFrom": [
                        {"target": "Labels", "configMap": {"name": "meta", "items": [{"key": "tier"}]}},
                        {"target": "Annotations", "literal": "synced-for/{{ user }}: yes"},
                    ],
                }
            },
        },
    )
    vs.wait_data("app", {"user": "shop", "password": "pw-one"})  # no data template: the data as fetched

    def metadata() -> tuple[dict[str, str], dict[str, str]]:
        meta = vs.secret("app").metadata
        return meta.labels or {}, meta.annotations or {}

    labels, annotations = eventually(lambda: _with_labels(metadata(), {"tier": "gold-shop"}), what="labels")
    assert labels["user"] == "shop"
    assert annotations["synced-for/shop"] == "yes"  # the text as written, not YAML's boolean
    vs.api.core.patch_namespaced_config_map("meta", vs.namespace, {"data": {"tier": "silver"}})
    eventually(lambda: _with_labels(metadata(), {"tier": "silver"}), what="the new label", timeout=60)


def _with_labels(
    found: tuple[dict[str, str], dict[str, str]], expected: dict[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    assert expected.items() <= found[0].items(), f"labels {sorted(found[0])}"
    return found


def test_a_template_from_another_namespace_is_refused_by_name_and_touches_nothing(
    vs: Vaultsync, operator: Any, other_namespace: str
) -> None:
    vs.fake_store("fake", [fake_entry("db", DB)])
    theirs = configmap(vs, "tpl", {"url": "{{ user }}"}, namespace=other_namespace)
    vs.external_secret("app", {"storeRef": {"name": "fake"}, "data": DATA})
    vs.wait_data("app", {"user": "shop", "password": "pw-one"})
    before = vs.secret("app").metadata.resource_version
    vs.patch_external_secret(
        "app",
        {
            "spec": {
                "target": {
                    "template": {
                        "templateFrom": [
                            {
                                "configMap": {
                                    "name": "tpl",
                                    "namespace": other_namespace,
                                    "items": [{"key": "url"}],
                                }
                            }
                        ]
                    }
                }
            }
        },
    )
    condition = vs.wait_reason("app", "InvalidSpec")
    assert condition["message"] == (
        "spec.target.template.templateFrom[0].configMap.namespace: a template is read only from "
        f"the ExternalSecret's own namespace ({vs.namespace}), not from '{other_namespace}'"
    )
    assert vs.secret("app").metadata.resource_version == before  # the Secret keeps its data
    assert vs.secret_data("app") == {"user": "shop", "password": "pw-one"}
    still = vs.api.core.read_namespaced_config_map("tpl", other_namespace)
    assert still.metadata.resource_version == theirs.metadata.resource_version


def test_a_service_account_token_secret_is_no_template_source(vs: Vaultsync, operator: Any) -> None:
    vs.fake_store("fake", [fake_entry("db", DB)])
    token = base64.b64encode(b"not-a-template").decode()
    vs.api.core.create_namespaced_secret(
        vs.namespace,
        {
            "metadata": {
                "name": "sa-token",
                "annotations": {"kubernetes.io/service-account.name": "default"},
            },
            "type": "kubernetes.io/service-account-token",
            "data": {"token": token},
        },
    )
    vs.external_secret(
        "app",
        {
            "storeRef": {"name": "fake"},
            "data": DATA,
            "target": {
                "template": {"templateFrom": [{"secret": {"name": "sa-token", "items": [{"key": "token"}]}}]}
            },
        },
    )
    condition = vs.wait_reason("app", "TemplateError")
    assert condition["message"].startswith(
        f"spec.target.template.templateFrom[0].secret.name: Secret {vs.namespace}/sa-token is of type "
        "'kubernetes.io/service-account-token', which is no template source"
    )
    assert not vs.secret_exists("app")


def test_a_missing_template_configmap_is_named_and_its_creation_renders(vs: Vaultsync, operator: Any) -> None:
    vs.fake_store("fake", [fake_entry("db", DB)])
    spec = {
        "storeRef": {"name": "fake"},
        "data": DATA,
        "target": {
            "template": {"templateFrom": [{"configMap": {"name": "later", "items": [{"key": "url"}]}}]}
        },
    }
    vs.external_secret("app", spec)
    condition = vs.wait_reason("app", "TemplateError")
    assert condition["message"] == (
        f"spec.target.template.templateFrom[0].configMap.name: ConfigMap {vs.namespace}/later does not exist"
    )
    configmap(vs, "later", {"url": "u={{ user }}"})
    vs.wait_data("app", {"url": "u=shop"}, timeout=60)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (
            {"type": "kubernetes.io/service-account-token"},
            "template.type 'kubernetes.io/service-account-token' is refused",
        ),
        (
            {"metadata": {"labels": {"vaultsync.io/owner-name": "x"}}},
            "template.metadata.labels key 'vaultsync.io/owner-name' is refused",
        ),
        ({"templateFrom": [{}]}, "a templateFrom entry needs configMap, secret or literal"),
        ({"templateFrom": [{"literal": "a: b", "target": "Secret"}]}, "Unsupported value"),
    ],
)
def test_the_api_server_refuses_bad_template_fields(
    vs: Vaultsync, template: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ApiException) as caught:
        vs.external_secret("bad", {"storeRef": {"name": "fake"}, "target": {"template": template}})
    assert caught.value.status == 422
    assert expected in json.loads(caught.value.body)["message"]
    eventually(lambda: not vs.secret_exists("bad"), what="no Secret")
