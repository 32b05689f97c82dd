"""spec.provider of the store CRDs is generated from the provider models, and nothing drifted.

`make crds` (mk/crds.py) writes it; these tests fail when crds/, the chart's copy and the
models disagree, when a YAML file has a key twice (strict parsers reject it, and the API
server keeps only one of the two), and when the generator stops publishing what a model
declares. tests/e2e/test_crd_validation.py and tests/e2e/tenancy/ prove the generated
rules on a real API server.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest
import yaml
from pydantic import ConfigDict, Field, ValidationError

from vaultsync.providers import PROVIDERS
from vaultsync.providers.base import Audience, ConfigModel
from vaultsync.providers.schema import cel, crd, model_schema, origin_field, provider_schema

REPO = Path(__file__).resolve().parents[2]
CRD_FILES = sorted((REPO / "crds").glob("*.yaml"))
CHART_CRDS = REPO / "charts" / "vaultsync" / "files" / "crds"


class _StrictLoader(yaml.SafeLoader):
    """Refuses a mapping that names a key twice (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def test_crds_agree_with_the_provider_models() -> None:
    checked = subprocess.run(
        [sys.executable, str(REPO / "mk" / "crds.py"), "--check"], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr


@pytest.mark.parametrize("path", CRD_FILES, ids=lambda p: p.name)
def test_the_chart_carries_crds_byte_for_byte(path: Path) -> None:
    assert (CHART_CRDS / path.name).read_bytes() == path.read_bytes(), "run `make chart-crds`"
    assert sorted(p.name for p in CHART_CRDS.glob("*.yaml")) == [p.name for p in CRD_FILES]


@pytest.mark.parametrize("path", CRD_FILES, ids=lambda p: p.name)
def test_no_yaml_key_is_defined_twice(path: Path) -> None:
    yaml.load(path.read_text(), Loader=_StrictLoader)


def test_the_strict_loader_refuses_a_duplicate_key() -> None:
    with pytest.raises(yaml.constructor.ConstructorError, match="duplicate key 'a'"):
        yaml.load("x:\n  a: 1\n  a: 2\n", Loader=_StrictLoader)


@pytest.mark.parametrize("name", ["secretstores.yaml", "clustersecretstores.yaml"])
def test_every_registered_provider_has_a_block_and_a_place_in_the_one_of_rule(name: str) -> None:
    crd_doc = yaml.safe_load((REPO / "crds" / name).read_text())
    spec = crd_doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    provider = spec["properties"]["provider"]
    assert list(provider["properties"]) == list(PROVIDERS)
    one_of = provider["x-kubernetes-validations"][0]
    for each in PROVIDERS:
        assert f"has(self.{each})" in one_of["rule"]
        assert each in one_of["message"]


# The generator, on a model made for the test -------------------------------------------------


class Inner(ConfigModel):
    model_config = ConfigDict(json_schema_extra=crd(cel("self.a != 'x'", "toy.inner.a must not be x")))

    a: str = Field(min_length=1, max_length=9, description="A.")


class Toy(ConfigModel):
    """A toy vault."""

    namespaced_rules: ClassVar[tuple[dict[str, str], ...]] = (
        cel("has(self.inner)", "toy.inner is required in a SecretStore", field_path=".inner"),
    )

    server: str = origin_field("toy.server", ("https",), optional=False, description="Where.")
    mode: Literal["a", "b"] = Field(default="b", description="Mode.")
    flag: bool = Field(default=True, description="Flag.")
    quiet: bool = Field(default=False, description="Off by default, so no default is published.")
    names: list[Audience] = Field(default_factory=list, max_length=3, description="Names.")
    blob: str = Field(default="", description="Bytes.", json_schema_extra=crd(format="byte"))
    inner: Inner | None = Field(default=None, description="Inner.")
    items: tuple[Inner, ...] = Field(description="Items.")
    kept: str = Field(description="Required here, not in the CRD.", json_schema_extra=crd(crd_required=False))


def test_a_model_becomes_its_crd_block() -> None:
    schema = model_schema(Toy, "toy")
    assert schema["required"] == ["server", "items"]  # not `kept`: crd_required=False
    props = schema["properties"]
    assert props["kept"] == {"type": "string", "description": "Required here, not in the CRD."}
    assert props["server"]["maxLength"] == 300
    assert props["server"]["x-kubernetes-validations"][0]["rule"].startswith("self.matches(r'^(https)://")
    assert props["server"]["x-kubernetes-validations"][0]["message"].startswith(
        "toy.server must be an origin"
    )
    assert props["mode"] == {"type": "string", "description": "Mode.", "enum": ["a", "b"], "default": "b"}
    assert props["flag"] == {"type": "boolean", "description": "Flag.", "default": True}
    assert props["quiet"] == {"type": "boolean", "description": "Off by default, so no default is published."}
    assert props["names"] == {
        "type": "array",
        "description": "Names.",
        "maxItems": 3,
        "items": {"type": "string", "minLength": 1, "maxLength": 253},
    }
    assert props["blob"] == {"type": "string", "description": "Bytes.", "format": "byte"}
    assert props["inner"]["required"] == ["a"]
    assert props["inner"]["x-kubernetes-validations"] == [
        {"rule": "self.a != 'x'", "message": "toy.inner.a must not be x"}
    ]
    assert props["inner"]["properties"]["a"] == {
        "type": "string",
        "description": "A.",
        "minLength": 1,
        "maxLength": 9,
    }
    assert props["items"]["type"] == "array"
    assert props["items"]["items"]["properties"] == props["inner"]["properties"]


def test_a_new_provider_is_one_more_block_and_one_more_name_in_the_one_of_rule() -> None:
    models = {name: provider.config_model for name, provider in PROVIDERS.items()}
    cluster = provider_schema({**models, "toy": Toy}, namespaced=False)
    namespaced = provider_schema({**models, "toy": Toy}, namespaced=True)
    assert cluster["properties"]["toy"]["description"] == "A toy vault."
    assert cluster["properties"] == namespaced["properties"]
    assert cluster["x-kubernetes-validations"][0]["rule"].endswith(" + (has(self.toy) ? 1 : 0) == 1")
    assert cluster["x-kubernetes-validations"][0]["message"].endswith(", fake, toy")
    assert len(cluster["x-kubernetes-validations"]) == 1
    assert namespaced["x-kubernetes-validations"][-1] == {
        "rule": "!has(self.toy) || (has(self.toy.inner))",
        "message": "toy.inner is required in a SecretStore",
        "fieldPath": ".toy.inner",
    }


def test_a_field_without_a_description_is_refused() -> None:
    class Undocumented(ConfigModel):
        """Undocumented."""

        x: str

    with pytest.raises(TypeError, match=r"\.x: every field of a provider model needs a description"):
        model_schema(Undocumented, "undocumented")


def test_the_model_enforces_the_bounds_it_publishes() -> None:
    """The operator refuses what the API server refuses, for objects it did not check."""
    with pytest.raises(ValidationError, match="at most 9 characters"):
        Inner.model_validate({"a": "x" * 10})
    with pytest.raises(ValidationError, match="at most 3 items"):
        Toy.model_validate({"server": "https://a", "items": [], "names": ["a", "b", "c", "d"]})


def test_a_cluster_external_secret_declares_exactly_an_external_secrets_spec() -> None:
    def spec_schema(name: str) -> dict[str, Any]:
        crd = yaml.safe_load((REPO / "crds" / name).read_text())
        schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        return schema

    copied = dict(spec_schema("clusterexternalsecrets.yaml")["properties"]["externalSecretSpec"])
    original = dict(spec_schema("externalsecrets.yaml"))
    copied.pop("description"), original.pop("description")
    assert copied == original
