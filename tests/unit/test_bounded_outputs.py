"""Inputs that would make the Secret unwritable, or crash the reconcile, end in a named
condition before any write: too many keys, annotations over the API server's limit, and text
that is not valid Unicode (a JSON lone surrogate) in properties, extracted names and templates.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from vaultsync import constants as c
from vaultsync.errors import InvalidSpec, PermanentError, PropertyNotFound, SecretTooLarge, TemplateError
from vaultsync.models import ExternalSecretSpec, TemplateSpec, parse_external_secret
from vaultsync.plan import check_bounds
from vaultsync.properties import extract_all, select_property
from vaultsync.providers.base import RemoteRef, RemoteValue
from vaultsync.renderer import TemplateRenderer, _checked
from vaultsync.sandbox import Limits
from vaultsync.templatefrom import Sources
from vaultsync.templating import build_data

LONE_SURROGATE = b'{"a": "\\ud800", "b": "fine"}'


def external_secret(annotations: dict[str, str] | None = None) -> Any:
    target: dict[str, Any] = {"annotations": annotations or {}}
    return parse_external_secret(
        {
            "metadata": {"name": "app", "namespace": "shop", "uid": "u", "generation": 1},
            "spec": {"storeRef": {"name": "s"}, "target": target, "dataFrom": [{"extract": {"key": "k"}}]},
        }
    )


def test_more_keys_than_the_limit_are_refused_naming_the_field() -> None:
    data = {f"k{i}": b"" for i in range(c.SECRET_MAX_KEYS + 1)}
    with pytest.raises(SecretTooLarge) as caught:
        check_bounds(external_secret(), data, "f" * 64)
    assert caught.value.message.startswith("spec.target: the Secret would have 1001 keys")
    assert isinstance(caught.value, PermanentError)


def test_the_limit_of_keys_is_accepted() -> None:
    data = {f"k{i}": b"" for i in range(c.SECRET_MAX_KEYS)}
    check_bounds(external_secret(), data, "f" * 64)


def test_a_managed_keys_annotation_over_the_api_servers_limit_is_refused_before_any_write() -> None:
    # 1000 keys of 253 characters list 254,000 bytes; with the tenant's own annotations the
    # total passes the API server's 256 KiB, which would fail every write (a retry loop).
    data = {f"{i:04d}" + "k" * 249: b"" for i in range(c.SECRET_MAX_KEYS)}
    own = {f"note-{i}": "x" * 4000 for i in range(4)}
    with pytest.raises(SecretTooLarge) as caught:
        check_bounds(external_secret(own), data, "f" * 64)
    assert caught.value.message.startswith("spec.target.annotations: the Secret's annotations would be")
    assert c.ANNOTATION_MANAGED_KEYS in caught.value.message
    assert "262144" in caught.value.message
    check_bounds(external_secret(), data, "f" * 64)  # without them it fits


def test_a_lone_surrogate_in_a_selected_property_is_refused_naming_the_field() -> None:
    with pytest.raises(PropertyNotFound) as caught:
        select_property(LONE_SURROGATE, "a", key="db", field="spec.data[0].remoteRef.property")
    assert caught.value.message.startswith("spec.data[0].remoteRef.property: the value of remote key 'db'")
    assert "not valid Unicode" in caught.value.message
    assert select_property(LONE_SURROGATE, "b", key="db", field="f") == b"fine"


def test_a_lone_surrogate_in_an_extracted_value_is_refused_naming_the_field() -> None:
    with pytest.raises(PropertyNotFound) as caught:
        extract_all(LONE_SURROGATE, key="db", field="spec.dataFrom[0].extract")
    assert caught.value.message.startswith("spec.dataFrom[0].extract:")


def test_a_lone_surrogate_in_an_extracted_name_is_converted_like_any_other_non_letter() -> None:
    spec = ExternalSecretSpec.model_validate(
        {"storeRef": {"name": "s"}, "dataFrom": [{"extract": {"key": "k"}}]}
    )
    fetched = {RemoteRef("k"): RemoteValue(b'{"\\ud800x": "v"}')}
    data, _ = asyncio.run(build_data(spec, fetched))  # type: ignore[arg-type]
    assert data == {"_x": b"v"}


def test_a_lone_surrogate_in_an_extracted_name_is_refused_by_its_masked_name() -> None:
    spec = ExternalSecretSpec.model_validate(
        {"storeRef": {"name": "s"}, "dataFrom": [{"extract": {"key": "k"}}]}
    )
    fetched = {RemoteRef("k"): RemoteValue(b'{"\\ud800": "1", "_": "2"}')}  # both become "_"
    with pytest.raises(InvalidSpec) as caught:
        asyncio.run(build_data(spec, fetched))  # type: ignore[arg-type]
    assert caught.value.message.startswith("spec.dataFrom[0].extract: remote names sha256:")


def test_a_template_rendering_a_lone_surrogate_is_refused_naming_the_key() -> None:
    with pytest.raises(TemplateError) as caught:
        _checked({"out": "ok\ud800"}, Sources({"out": "{{ x }}"}), Limits())
    assert caught.value.message == (
        "spec.target.template.data.out: the rendered text is not valid Unicode "
        "(a lone surrogate), so it cannot be written as UTF-8"
    )


def test_non_utf8_bytes_pass_through_a_template_unchanged() -> None:
    renderer = TemplateRenderer(Limits(), workers=1)

    async def run() -> dict[str, bytes]:
        try:
            return await renderer.render(
                "shop", TemplateSpec(data={"out": "<{{ v }}>"}), {"v": b"\xff\xfe\x80"}
            )
        finally:
            await renderer.close()

    assert asyncio.run(run()) == {"out": b"<\xff\xfe\x80>"}
