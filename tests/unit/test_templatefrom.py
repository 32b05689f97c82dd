"""templateFrom: templates read from ConfigMaps and Secrets of the ExternalSecret's namespace,
rendered in a render worker as the operator renders them, and joined as ESO joins them."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from vaultsync.commands import render as render_command
from vaultsync.constants import TEMPLATE_FROM_MAX_TOTAL_BYTES
from vaultsync.errors import InvalidSpec, TemplateError
from vaultsync.models import ExternalSecretSpec, TemplateSpec, parse_external_secret
from vaultsync.renderer import TemplateRenderer
from vaultsync.sandbox import Limits, RenderError, parse_map
from vaultsync.templatefrom import Objects, Rendered, assemble, collect, template_objects

NS = "shop"
SECRET = "s3cr3t-Okapi-Narwhal-7"
_LOOP = asyncio.new_event_loop()
_RENDERER = TemplateRenderer(Limits(), workers=1)


@pytest.fixture(autouse=True, scope="module")
def _render_worker() -> Iterator[None]:
    yield
    _LOOP.run_until_complete(_RENDERER.close())
    _LOOP.close()


def configmap(data: Mapping[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": "tpl", "namespace": NS}, "data": dict(data)}


def secret(data: Mapping[str, str], secret_type: str = "Opaque") -> dict[str, Any]:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return {"metadata": {"name": "tpl", "namespace": NS}, "type": secret_type, "data": encoded}


def template(**fields: Any) -> TemplateSpec:
    return TemplateSpec.model_validate(fields)


def from_configmap(*items: Mapping[str, str], name: str = "tpl") -> dict[str, Any]:
    return {"configMap": {"name": name, "items": list(items)}}


def rendered(spec: TemplateSpec, objects: Objects, fetched: Mapping[str, bytes]) -> Rendered:
    sources = collect(spec, objects, NS)
    output = _LOOP.run_until_complete(_RENDERER.render_sources(NS, spec.delimiters, sources, fetched))
    return assemble(spec, sources, output, fetched)


def run(spec: TemplateSpec, objects: Objects, fetched: Mapping[str, bytes]) -> dict[str, bytes]:
    return rendered(spec, objects, fetched).data


FETCHED = {"user": b"app", "password": SECRET.encode()}


def test_values_items_become_keys_of_their_name_and_data_overrides_them() -> None:
    spec = template(
        templateFrom=[from_configmap({"key": "url"}, {"key": "user"})],
        data={"user": "admin-{{ user }}"},
    )
    objects = {("ConfigMap", "tpl"): configmap({"url": "db://{{ user }}:{{ password }}@db", "user": "x"})}
    assert run(spec, objects, FETCHED) == {
        "url": f"db://app:{SECRET}@db".encode(),
        "user": b"admin-app",
    }


def test_keys_and_values_and_literal_render_a_yaml_map_of_keys() -> None:
    pairs = "{% for k in ['user', 'password'] %}{{ k }}_copy: {{ k }}-{{ user }}\n{% endfor %}"
    spec = template(
        templateFrom=[
            {"secret": {"name": "tpl", "items": [{"key": "all", "templateAs": "KeysAndValues"}]}},
            {"literal": "config.yaml: |\n  user: {{ user }}\nport: 5432\ntls: true\n"},
        ]
    )
    objects = {("Secret", "tpl"): secret({"all": pairs})}
    assert run(spec, objects, FETCHED) == {
        "user_copy": b"user-app",
        "password_copy": b"password-app",
        "config.yaml": b"user: app\n",
        "port": b"5432",
        "tls": b"true",
    }


def test_merge_policy_merge_keeps_the_fetched_keys_and_replace_drops_them() -> None:
    objects: Objects = {}
    merged = run(template(mergePolicy="Merge", data={"url": "x-{{ user }}"}), objects, FETCHED)
    assert merged == {**FETCHED, "url": b"x-app"}
    replaced = run(template(data={"url": "x-{{ user }}"}), objects, FETCHED)
    assert replaced == {"url": b"x-app"}


def test_a_missing_configmap_or_key_names_its_field() -> None:
    spec = template(templateFrom=[from_configmap({"key": "url"}, {"key": "nope"})])
    with pytest.raises(TemplateError) as caught:
        collect(spec, {("ConfigMap", "tpl"): None}, NS)
    assert (
        caught.value.message
        == "spec.target.template.templateFrom[0].configMap.name: ConfigMap shop/tpl does not exist"
    )
    with pytest.raises(TemplateError) as caught:
        collect(spec, {("ConfigMap", "tpl"): configmap({"url": "u"})}, NS)
    assert caught.value.message == (
        "spec.target.template.templateFrom[0].configMap.items[1].key: ConfigMap shop/tpl has no key 'nope'"
    )


def test_a_service_account_token_secret_is_no_template_source() -> None:
    spec = template(templateFrom=[{"secret": {"name": "tpl", "items": [{"key": "token"}]}}])
    token = secret({"token": SECRET}, "kubernetes.io/service-account-token")
    with pytest.raises(TemplateError) as caught:
        collect(spec, {("Secret", "tpl"): token}, NS)
    assert caught.value.message.startswith(
        "spec.target.template.templateFrom[0].secret.name: Secret shop/tpl is of type "
        "'kubernetes.io/service-account-token', which is no template source"
    )
    assert SECRET not in caught.value.message


def test_the_templates_read_are_bounded_in_total() -> None:
    chunk = "x" * (64 * 1024)
    items = [{"key": f"k{i}"} for i in range(TEMPLATE_FROM_MAX_TOTAL_BYTES // len(chunk) + 1)]
    spec = template(templateFrom=[from_configmap(*items)])
    objects = {("ConfigMap", "tpl"): configmap({i["key"]: chunk for i in items})}
    with pytest.raises(TemplateError) as caught:
        collect(spec, objects, NS)
    assert caught.value.message.startswith("spec.target.template.templateFrom: the templates read")


def test_a_template_over_the_size_limit_is_refused_naming_its_item() -> None:
    spec = template(templateFrom=[from_configmap({"key": "big"})])
    objects = {("ConfigMap", "tpl"): configmap({"big": "x" * (64 * 1024 + 1)})}
    sources = collect(spec, objects, NS)
    with pytest.raises(TemplateError) as caught:
        _LOOP.run_until_complete(_RENDERER.render_sources(NS, spec.delimiters, sources, FETCHED))
    assert caught.value.message.startswith(
        "spec.target.template.templateFrom[0].configMap.items[0]: the template is"
    )


def test_a_template_from_a_configmap_is_under_the_cpu_limit_and_named() -> None:
    spec = template(templateFrom=[from_configmap({"key": "bomb"})])
    bomb = "{% for a in range(99999) %}{% for b in range(99999) %}{% endfor %}{% endfor %}"
    sources = collect(spec, {("ConfigMap", "tpl"): configmap({"bomb": bomb})}, NS)
    with pytest.raises(TemplateError) as caught:
        _LOOP.run_until_complete(_RENDERER.render_sources(NS, spec.delimiters, sources, FETCHED))
    assert caught.value.message == (
        "spec.target.template.templateFrom[0].configMap.items[0]: exceeded the CPU time limit of 1 s"
    )


def test_a_rendered_key_that_is_not_a_secret_key_is_refused_without_showing_it() -> None:
    spec = template(templateFrom=[{"literal": "'{{ password }}/x': v"}])
    with pytest.raises(TemplateError) as caught:
        run(spec, {}, FETCHED)
    message = caught.value.message
    assert message.startswith("spec.target.template.templateFrom[0].literal: the rendered key sha256:")
    assert SECRET not in message


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("a: [1, 2]", "no nested map or list"),
        ("- a\n- b", "not a YAML map"),
        (f"a: {SECRET}\n  b: : :", "is not YAML (line"),
    ],
)
def test_a_rendered_map_must_be_flat_yaml_and_its_errors_quote_nothing(text: str, error: str) -> None:
    with pytest.raises(RenderError) as caught:
        parse_map("here", text)
    assert error in caught.value.message
    assert SECRET not in caught.value.message


def test_template_objects_are_listed_once_each() -> None:
    spec = template(
        templateFrom=[
            from_configmap({"key": "a"}),
            from_configmap({"key": "b"}),
            {"secret": {"name": "tpl", "items": [{"key": "c"}]}},
        ]
    )
    assert template_objects(spec) == [("ConfigMap", "tpl"), ("Secret", "tpl")]


def body(template_spec: Mapping[str, Any], namespace: str = NS) -> dict[str, Any]:
    return {
        "metadata": {"name": "app", "namespace": namespace, "uid": "u"},
        "spec": {"storeRef": {"name": "s"}, "target": {"template": dict(template_spec)}},
    }


@pytest.mark.parametrize("where", ["configMap", "secret"])
def test_a_template_source_in_another_namespace_is_refused_naming_the_field(where: str) -> None:
    ref = {"name": "tpl", "namespace": "kube-system", "items": [{"key": "a"}]}
    with pytest.raises(InvalidSpec) as caught:
        parse_external_secret(body({"templateFrom": [{"literal": "a: b"}, {where: ref}]}))
    assert caught.value.message == (
        f"spec.target.template.templateFrom[1].{where}.namespace: a template is read only from the "
        "ExternalSecret's own namespace (shop), not from 'kube-system'"
    )
    same = {"name": "tpl", "namespace": NS, "items": [{"key": "a"}]}
    assert parse_external_secret(body({"templateFrom": [{where: same}]})).spec.target.template is not None


@pytest.mark.parametrize(
    ("template_spec", "field"),
    [
        ({"type": "kubernetes.io/service-account-token"}, "spec.target.template.type"),
        ({"metadata": {"labels": {"vaultsync.io/owner-name": "x"}}}, "spec.target.template.metadata.labels"),
        (
            {"metadata": {"annotations": {"kubernetes.io/service-account.name": "default"}}},
            "spec.target.template.metadata.annotations",
        ),
        ({"templateFrom": [{}]}, "spec.target.template.templateFrom[0]"),
        (
            {"templateFrom": [{"literal": "a: b", "target": "Secret"}]},
            "spec.target.template.templateFrom[0].target",
        ),
        (
            {"templateFrom": [{"configMap": {"name": "tpl", "items": []}}]},
            "spec.target.template.templateFrom[0].configMap.items",
        ),
        ({"mergePolicy": "Append"}, "spec.target.template.mergePolicy"),
    ],
)
def test_bad_template_fields_are_refused_by_name(template_spec: Mapping[str, Any], field: str) -> None:
    with pytest.raises(InvalidSpec) as caught:
        parse_external_secret(body(template_spec))
    assert caught.value.message.startswith(f"{field}:"), caught.value.message


def test_template_type_and_metadata_go_over_the_targets() -> None:
    spec = ExternalSecretSpec.model_validate(
        {
            "storeRef": {"name": "s"},
            "target": {
                "type": "Opaque",
                "labels": {"a": "1", "b": "1"},
                "template": {
                    "type": "kubernetes.io/tls",
                    "metadata": {"labels": {"b": "2"}, "annotations": {"c": "3"}},
                },
            },
        }
    )
    assert spec.target.secret_type == "kubernetes.io/tls"
    assert spec.target.secret_labels == {"a": "1", "b": "2"}
    assert spec.target.secret_annotations == {"c": "3"}


def test_vaultsync_render_takes_template_sources_from_the_same_file() -> None:
    documents = [
        {"kind": "ConfigMap", "metadata": {"name": "tpl"}, "data": {"url": "db://{{ user }}@db"}},
        {"kind": "Secret", "metadata": {"name": "more"}, "stringData": {"pairs": "other: x-{{ user }}"}},
        {
            "kind": "ExternalSecret",
            "metadata": {"name": "app"},
            "spec": {
                "storeRef": {"name": "s"},
                "data": [{"secretKey": "user", "remoteRef": {"key": "db"}}],
                "target": {
                    "template": {
                        "templateFrom": [
                            from_configmap({"key": "url"}),
                            {
                                "secret": {
                                    "name": "more",
                                    "items": [{"key": "pairs", "templateAs": "KeysAndValues"}],
                                }
                            },
                        ]
                    }
                },
            },
        },
    ]
    es = render_command._external_secret(documents, None)
    secret = asyncio.run(
        render_command.render_secret(es, {"db": b"app"}, render_command._template_objects(documents))
    )
    assert {k: base64.b64decode(v) for k, v in secret["data"].items()} == {
        "url": b"db://app@db",
        "other": b"x-app",
    }


def test_metadata_and_templates_targeting_labels_or_annotations_render_apart_from_the_data() -> None:
    spec = template(
        metadata={"labels": {"user": "{{ user }}"}, "annotations": {"note": "for {{ user }}"}},
        templateFrom=[
            {"target": "Annotations", "literal": "last-sync-for-user/{{ user }}: yes"},
            {"target": "Labels", "configMap": {"name": "tpl", "items": [{"key": "tier"}]}},
        ],
    )
    out = rendered(spec, {("ConfigMap", "tpl"): configmap({"tier": "gold-{{ user }}"})}, FETCHED)
    assert out.data == FETCHED  # no template writes data: the fetched data stays, as in ESO
    assert out.labels == {"user": "app", "tier": "gold-app"}
    assert out.annotations == {"note": "for app", "last-sync-for-user/app": "yes"}


@pytest.mark.parametrize(
    ("template_spec", "message"),
    [
        (
            {"templateFrom": [{"target": "Annotations", "literal": "kubernetes.io/service-account.name: x"}]},
            "spec.target.template.templateFrom[0].literal: annotation 'kubernetes.io/service-account.name'",
        ),
        (
            {"templateFrom": [{"target": "Labels", "literal": "owner: helm"}]},
            "spec.target.template.templateFrom[0].literal: label owner=helm is refused",
        ),
        (
            {"metadata": {"labels": {"pw": "{{ password }} x"}}},
            "spec.target.template.metadata.labels.pw: the rendered value of label 'pw' is not a valid",
        ),
        (
            {"templateFrom": [{"target": "Labels", "literal": "'{{ password }} key': v"}]},
            "spec.target.template.templateFrom[0].literal: the rendered label key sha256:",
        ),
    ],
)
def test_rendered_metadata_is_refused_as_the_targets_is_without_quoting_a_value(
    template_spec: Mapping[str, Any], message: str
) -> None:
    with pytest.raises(TemplateError) as caught:
        rendered(template(**template_spec), {}, FETCHED)
    assert caught.value.message.startswith(message), caught.value.message
    assert SECRET not in caught.value.message
