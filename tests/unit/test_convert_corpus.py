"""`vaultsync convert` over a corpus of ESO manifests: expected outputs and expected refusals.

The corpus (tests/data/convert/, see its README) is modeled on External Secrets Operator's
documentation examples. Each `<case>.yaml` has a `<case>.expected.yaml` (the vaultsync
objects) and a `<case>.report.yaml` (every field that did not move, or moved with a note).
tests/e2e/test_convert_apply.py applies the expected outputs to a real API server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from vaultsync.convert import Document, convert
from vaultsync.models import parse_external_secret

CORPUS = Path(__file__).resolve().parents[1] / "data" / "convert"
CASES = sorted(
    p.name[: -len(".yaml")]
    for p in CORPUS.glob("*.yaml")
    if not p.name.endswith((".expected.yaml", ".report.yaml"))
)


def converted(case: str) -> Any:
    source = CORPUS / f"{case}.yaml"
    bodies = yaml.safe_load_all(source.read_text())
    return convert(Document(f"{source.name}#{i}", body) for i, body in enumerate(bodies))


def test_the_corpus_has_cases_of_every_kind_and_outcome() -> None:
    kinds = {b["kind"] for c in CASES for b in yaml.safe_load_all((CORPUS / f"{c}.yaml").read_text())}
    assert kinds == {"ExternalSecret", "SecretStore", "ClusterSecretStore", "ClusterExternalSecret"}
    versions = {
        b["apiVersion"] for c in CASES for b in yaml.safe_load_all((CORPUS / f"{c}.yaml").read_text())
    }
    assert versions == {"external-secrets.io/v1", "external-secrets.io/v1beta1"}
    outcomes = [converted(c) for c in CASES]
    assert any(o.complete and o.objects for o in outcomes)
    assert any(o.refused for o in outcomes)
    assert any(f.level == "dropped" for o in outcomes for f in o.findings)


@pytest.mark.parametrize("case", CASES)
def test_each_case_converts_to_its_expected_objects(case: str) -> None:
    expected = [d for d in yaml.safe_load_all((CORPUS / f"{case}.expected.yaml").read_text()) if d]
    assert converted(case).objects == expected


@pytest.mark.parametrize("case", CASES)
def test_each_case_reports_exactly_its_expected_findings(case: str) -> None:
    expected = yaml.safe_load((CORPUS / f"{case}.report.yaml").read_text())
    findings = [{"source": f.source, "field": f.field, "level": f.level} for f in converted(case).findings]
    assert findings == expected
    assert all(f.reason for f in converted(case).findings)


@pytest.mark.parametrize("case", CASES)
def test_every_converted_external_secret_passes_the_operators_own_model(case: str) -> None:
    for body in converted(case).objects:
        if body["kind"] == "ExternalSecret":
            meta = {"namespace": "n", **body["metadata"], "uid": "u", "generation": 1}
            parse_external_secret({**body, "metadata": meta})


def test_an_object_with_a_refused_field_is_not_written_but_the_others_are() -> None:
    result = converted("cluster-external-secret-fanout")
    assert [o["kind"] for o in result.objects] == ["ExternalSecret", "ClusterExternalSecret"]
    assert (result.converted, result.refused) == (2, 1)
    assert not result.complete


def test_a_field_the_converter_does_not_know_is_refused_never_dropped() -> None:
    body = {
        "apiVersion": "external-secrets.io/v1",
        "kind": "ExternalSecret",
        "metadata": {"name": "x"},
        "spec": {"secretStoreRef": {"name": "s"}, "futureField": {"a": 1}, "target": {"newThing": True}},
    }
    result = convert([Document("t#0", body)])
    assert {(f.field, f.level) for f in result.findings} == {
        ("spec.futureField", "refused"),
        ("spec.target.newThing", "refused"),
    }
    assert result.objects == []


@pytest.mark.parametrize(
    ("api_version", "kind"),
    [
        ("external-secrets.io/v1alpha1", "ExternalSecret"),
        ("external-secrets.io/v1", "PushSecret"),
        ("v1", "Secret"),
    ],
)
def test_other_kinds_and_versions_are_refused_by_name(api_version: str, kind: str) -> None:
    body = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}, "spec": {}}
    result = convert([Document("t#0", body)])
    assert [(f.field, f.level) for f in result.findings] == [("apiVersion", "refused")]
    assert result.objects == []


def test_a_list_is_converted_item_by_item() -> None:
    store = yaml.safe_load((CORPUS / "basic-secret-store.yaml").read_text())
    result = convert([Document("l#0", {"apiVersion": "v1", "kind": "List", "items": [store, store]})])
    assert len(result.objects) == 2
    assert result.complete
