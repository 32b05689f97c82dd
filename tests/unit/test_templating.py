"""Secret data is built from fetched values through a sandboxed template, and no error repeats a value.

Templates render as the operator renders them: in a render worker process.
"""

from __future__ import annotations

import asyncio
import base64
import json
import traceback
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from vaultsync.constants import Reason
from vaultsync.errors import InvalidSpec, PropertyNotFound, ProviderError, SecretNotFound, TemplateError
from vaultsync.models import ExternalSecretSpec, TemplateSpec
from vaultsync.properties import masked_name
from vaultsync.providers.base import RemoteRef, RemoteValue
from vaultsync.renderer import TemplateRenderer
from vaultsync.sandbox import Limits
from vaultsync.templating import build_data, remote_refs

SECRET = "s3cr3t-Zebra-Quokka-42"
_LOOP = asyncio.new_event_loop()
_RENDERER = TemplateRenderer(Limits(), workers=1)


@pytest.fixture(autouse=True, scope="module")
def _render_worker() -> Iterator[None]:
    yield
    _LOOP.run_until_complete(_RENDERER.close())
    _LOOP.close()


def render(template: TemplateSpec, values: Mapping[str, bytes]) -> dict[str, bytes]:
    return _LOOP.run_until_complete(_RENDERER.render("tenant", template, values))


def spec(**fields: Any) -> ExternalSecretSpec:
    return ExternalSecretSpec.model_validate({"storeRef": {"name": "store"}, **fields})


def template(data: Mapping[str, str], delimiters: tuple[str, str] | None = None) -> TemplateSpec:
    if delimiters is None:
        return TemplateSpec(data=dict(data))
    return TemplateSpec(data=dict(data), delimiters=delimiters)


def render_one(source: str, **values: str) -> bytes:
    return render(template({"out": source}), {k: v.encode() for k, v in values.items()})["out"]


def template_error(source: str, **values: str) -> TemplateError:
    with pytest.raises(TemplateError) as caught:
        render_one(source, **values)
    return caught.value


def everything_said_about(exc: BaseException) -> str:
    """The message, the repr and a full traceback as a log handler would print it."""
    return "\n".join([str(exc), repr(exc), "".join(traceback.format_exception(exc))])


def test_a_template_renders_the_fetched_keys() -> None:
    out = render_one(
        "postgresql://{{ username }}:{{ password }}@db:5432/{{ database }}",
        username="app",
        password=SECRET,
        database="shop",
    )
    assert out == f"postgresql://app:{SECRET}@db:5432/shop".encode()


def test_custom_delimiters_replace_the_default_ones() -> None:
    rendered = render(
        template({"url": "<< user >>:<<password>> {{ user }}"}, delimiters=("<<", ">>")),
        {"user": b"app", "password": SECRET.encode()},
    )
    assert rendered == {"url": f"app:{SECRET} {{{{ user }}}}".encode()}


def test_every_template_key_becomes_a_secret_key() -> None:
    rendered = render(template({"a": "{{ x }}", "b": "static", "c": "{{ x }}-{{ x }}"}), {"x": b"1"})
    assert rendered == {"a": b"1", "b": b"static", "c": b"1-1"}


def test_trailing_newlines_are_kept() -> None:
    assert render_one("{{ cert }}\n", cert="PEM") == b"PEM\n"


def test_an_undefined_variable_fails_naming_it_and_the_template_key() -> None:
    exc = template_error("{{ usernme }}", username="app")
    assert str(exc).startswith("spec.target.template.data.out: 'usernme' is undefined")
    assert exc.reason is Reason.TEMPLATE_ERROR


def test_an_undefined_variable_in_custom_delimiters_fails_too() -> None:
    with pytest.raises(TemplateError, match=r"^spec\.target\.template\.data\.url: 'host' is undefined"):
        render(template({"url": "<< host >>"}, delimiters=("<<", ">>")), {})


def test_a_syntax_error_names_the_template_key_and_the_line() -> None:
    exc = template_error("line one\n{{ password ", password=SECRET)
    assert str(exc).startswith("spec.target.template.data.out: syntax error on line 2: ")


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ("{{ password | b64decode }}", SECRET),
        ("{{ password | fromjson }}", SECRET),
        ("{{ (password | fromjson).x }}", '{"x": "' + SECRET),
        ("{{ password | format(port=1) }}", f"%({SECRET})s"),
        ("{{ password.format() }}", f"{{{SECRET}}}"),
        ("{{ password | b64decode }}", base64.b64encode(b"\xff" + SECRET.encode()).decode()),
        ("{{ password + 1 }}", SECRET),
        ("{{ password | round }}", SECRET),
    ],
)
def test_an_error_raised_on_a_secret_value_does_not_echo_it(source: str, value: str) -> None:
    exc = template_error(source, password=value)
    assert str(exc).startswith("spec.target.template.data.out: ")
    assert SECRET not in everything_said_about(exc)


def test_an_undefined_lookup_keyed_by_a_secret_value_does_not_echo_it() -> None:
    # A lookup table indexed by a fetched value: the key that was not found is the value.
    exc = template_error("{{ (hosts | fromjson)[region] }}", hosts='{"eu": "db-eu"}', region=SECRET)
    assert str(exc).startswith("spec.target.template.data.out: ")
    assert SECRET not in everything_said_about(exc)


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ password.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ lipsum.__globals__['os'].popen('id').read() }}",
        "{{ [].append(1) }}",
        "{{ password.__class__ }}",
    ],
)
def test_the_sandbox_blocks_python_internals(source: str) -> None:
    exc = template_error(source, password=SECRET)
    assert str(exc) == "spec.target.template.data.out: SecurityError while rendering"
    assert SECRET not in everything_said_about(exc)


def test_b64encode_encodes_a_value() -> None:
    assert render_one("{{ password | b64encode }}", password=SECRET) == base64.b64encode(SECRET.encode())


def test_b64decode_decodes_a_value() -> None:
    encoded = base64.b64encode(SECRET.encode()).decode()
    assert render_one("{{ password | b64decode }}", password=encoded) == SECRET.encode()


def test_fromjson_gives_access_to_the_fields_of_a_json_value() -> None:
    blob = json.dumps({"user": "app", "hosts": ["h1", "h2"]})
    assert render_one("{{ (blob | fromjson).user }}@{{ (blob | fromjson).hosts[1] }}", blob=blob) == b"app@h2"


def test_a_template_cannot_change_the_values_of_another_template_key() -> None:
    rendered = render(
        template({"a": "{% set password = 'x' %}{{ password }}", "b": "{{ password }}"}),
        {"password": SECRET.encode()},
    )
    assert rendered == {"a": b"x", "b": SECRET.encode()}


# build_data ----------------------------------------------------------------------------------


def build(
    es: ExternalSecretSpec, fetched: Mapping[RemoteRef, Any]
) -> tuple[dict[str, bytes], dict[str, str]]:
    return asyncio.run(build_data(es, fetched))


def values(by_key: dict[str, str]) -> dict[RemoteRef, Any]:
    """What the fetch cache would return for these keys (latest version, unversioned)."""
    return {RemoteRef(key): RemoteValue(text.encode()) for key, text in by_key.items()}


def test_data_from_comes_first_and_data_overrides_it() -> None:
    es = spec(
        dataFrom=[{"extract": {"key": "prod/app"}}],
        data=[{"secretKey": "user", "remoteRef": {"key": "prod/override"}}],
    )
    fetched = values(
        {"prod/app": json.dumps({"user": "from-extract", "password": SECRET}), "prod/override": "admin"}
    )
    data, _ = build(es, fetched)
    assert data == {"user": b"admin", "password": SECRET.encode()}


def test_a_later_data_entry_overrides_an_earlier_extract() -> None:
    es = spec(dataFrom=[{"extract": {"key": "a"}}, {"extract": {"key": "b"}}])
    data, _ = build(es, values({"a": '{"k": "1", "x": "a"}', "b": '{"k": "2"}'}))
    assert data == {"k": b"2", "x": b"a"}


def test_a_data_entry_selects_its_property() -> None:
    es = spec(data=[{"secretKey": "pw", "remoteRef": {"key": "prod/db", "property": "db.password"}}])
    data, _ = build(es, values({"prod/db": json.dumps({"db": {"password": SECRET}})}))
    assert data == {"pw": SECRET.encode()}


def test_a_template_replaces_the_fetched_keys_with_its_own() -> None:
    es = spec(
        data=[
            {"secretKey": "user", "remoteRef": {"key": "prod/db", "property": "user"}},
            {"secretKey": "password", "remoteRef": {"key": "prod/db", "property": "password"}},
        ],
        target={"template": {"data": {"DATABASE_URL": "pg://{{ user }}:{{ password }}@db"}}},
    )
    data, _ = build(es, values({"prod/db": json.dumps({"user": "app", "password": SECRET})}))
    assert es.target.template is not None
    assert render(es.target.template, data) == {"DATABASE_URL": f"pg://app:{SECRET}@db".encode()}


def test_a_template_without_data_keeps_the_fetched_keys() -> None:
    es = spec(
        data=[{"secretKey": "password", "remoteRef": {"key": "prod/db"}}],
        target={"template": {"delimiters": ["<<", ">>"]}},
    )
    data, _ = build(es, values({"prod/db": SECRET}))
    assert data == {"password": SECRET.encode()}


def test_the_versions_read_are_reported_by_key_and_pinned_versions_by_key_and_pin() -> None:
    es = spec(
        data=[
            {"secretKey": "a", "remoteRef": {"key": "prod/db"}},
            {"secretKey": "b", "remoteRef": {"key": "prod/db", "version": "2"}},
            {"secretKey": "c", "remoteRef": {"key": "prod/unversioned"}},
        ]
    )
    fetched = {
        RemoteRef("prod/db"): RemoteValue(b"x", "3"),
        RemoteRef("prod/db", "2"): RemoteValue(b"y", "2"),
        RemoteRef("prod/unversioned"): RemoteValue(b"z", ""),
    }
    _, versions = build(es, fetched)
    assert versions == {"prod/db": "3", "prod/db@2": "2"}


def test_a_provider_error_is_prefixed_with_the_field_of_the_entry_that_needed_it() -> None:
    es = spec(
        data=[
            {"secretKey": "a", "remoteRef": {"key": "prod/ok"}},
            {"secretKey": "b", "remoteRef": {"key": "prod/missing"}},
        ]
    )
    fetched: dict[RemoteRef, Any] = {
        RemoteRef("prod/ok"): RemoteValue(b"x"),
        RemoteRef("prod/missing"): SecretNotFound("key 'prod/missing' does not exist"),
    }
    with pytest.raises(SecretNotFound) as caught:
        build(es, fetched)
    assert str(caught.value) == "spec.data[1].remoteRef.key: key 'prod/missing' does not exist"
    assert caught.value.message == str(caught.value)
    assert caught.value.reason is Reason.KEY_NOT_FOUND


def test_an_extract_error_is_prefixed_with_its_field() -> None:
    es = spec(dataFrom=[{"extract": {"key": "prod/app"}}])
    error = ProviderError("vault unreachable", retry_after=30.0)
    with pytest.raises(ProviderError) as caught:
        build(es, {RemoteRef("prod/app"): error})
    assert str(caught.value) == "spec.dataFrom[0].extract.key: vault unreachable"
    assert caught.value.retry_after == 30.0


def test_a_shared_provider_error_is_not_prefixed_twice() -> None:
    # The fetch cache hands one error to every ExternalSecret waiting on that key.
    error = SecretNotFound("key 'prod/db' does not exist")
    fetched: dict[RemoteRef, Any] = {RemoteRef("prod/db"): error}
    for _ in range(2):
        with pytest.raises(SecretNotFound) as caught:
            build(spec(data=[{"secretKey": "a", "remoteRef": {"key": "prod/db"}}]), fetched)
        assert str(caught.value) == "spec.data[0].remoteRef.key: key 'prod/db' does not exist"
    assert str(error) == "key 'prod/db' does not exist"


def test_a_missing_property_names_the_property_field() -> None:
    es = spec(
        data=[
            {"secretKey": "a", "remoteRef": {"key": "prod/db", "property": "user"}},
            {"secretKey": "b", "remoteRef": {"key": "prod/db", "property": "passwd"}},
        ]
    )
    with pytest.raises(PropertyNotFound) as caught:
        build(es, values({"prod/db": json.dumps({"user": "app", "password": SECRET})}))
    assert str(caught.value).startswith("spec.data[1].remoteRef.property: ")
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("name", ["ключ", "", ".", "..", "..data", pytest.param("x" * 254, id="254-chars")])
def test_an_extracted_property_that_is_not_a_valid_secret_key_is_an_invalid_spec(name: str) -> None:
    es = spec(dataFrom=[{"extract": {"key": "prod/app"}}])
    with pytest.raises(InvalidSpec) as caught:
        build(es, values({"prod/app": json.dumps({"ok": "1", name: SECRET})}))
    message = str(caught.value)
    assert message.startswith("spec.dataFrom[0].extract: ")
    assert "'prod/app'" in message
    assert SECRET not in message
    assert masked_name(name) in message


def test_extracted_names_are_converted_as_eso_does_unless_asked_otherwise() -> None:
    document = json.dumps({"bad key": "1", "a/b": "2", "ok": "3"})
    default = spec(dataFrom=[{"extract": {"key": "prod/app"}}])
    assert build(default, values({"prod/app": document}))[0] == {"bad_key": b"1", "a_b": b"2", "ok": b"3"}
    unicode = spec(dataFrom=[{"extract": {"key": "prod/app", "conversionStrategy": "Unicode"}}])
    data, _ = build(unicode, values({"prod/app": document}))
    assert data == {"bad_U0020_key": b"1", "a_U002f_b": b"2", "ok": b"3"}


def test_a_property_name_that_is_itself_a_secret_is_never_quoted_in_full() -> None:
    es = spec(dataFrom=[{"extract": {"key": "prod/app"}}])
    name = f"..token{SECRET}"  # a leading '..' makes it an invalid Secret key, converted or not
    with pytest.raises(InvalidSpec) as caught:
        build(es, values({"prod/app": json.dumps({name: "x"})}))
    message = str(caught.value)
    assert SECRET not in message
    assert SECRET[:8] not in message
    assert f"({len(name)} characters)" in message


def test_a_template_error_during_build_is_reported_with_its_key() -> None:
    es = spec(
        data=[{"secretKey": "password", "remoteRef": {"key": "prod/db"}}],
        target={"template": {"data": {"url": "{{ pasword }}"}}},
    )
    data, _ = build(es, values({"prod/db": SECRET}))
    assert es.target.template is not None
    with pytest.raises(TemplateError, match=r"^spec\.target\.template\.data\.url: 'pasword' is undefined"):
        render(es.target.template, data)


def test_remote_refs_lists_each_distinct_remote_value_once_in_spec_order() -> None:
    es = spec(
        dataFrom=[{"extract": {"key": "prod/app"}}],
        data=[
            {"secretKey": "a", "remoteRef": {"key": "prod/db", "property": "user"}},
            {"secretKey": "b", "remoteRef": {"key": "prod/db", "property": "password"}},
            {"secretKey": "c", "remoteRef": {"key": "prod/db", "version": "2"}},
            {"secretKey": "d", "remoteRef": {"key": "prod/app"}},
        ],
    )
    assert remote_refs(es) == [RemoteRef("prod/app"), RemoteRef("prod/db"), RemoteRef("prod/db", "2")]
