"""What `vaultsync convert` writes is accepted by a real API server with vaultsync's CRDs.

Every expected output of the conversion corpus (tests/data/convert/) is applied with a
server-side dry run, so the CRDs' schemas and CEL rules judge it, not the converter's idea of
them; the objects are the converter's own output for the corpus, produced by the CLI.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.env import kube
from tests.env.kube import Cluster, KubeApi
from vaultsync.cli import main

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("install_crds")]

CORPUS = Path(__file__).resolve().parents[1] / "data" / "convert"
SOURCES = sorted(p for p in CORPUS.glob("*.yaml") if not p.name.endswith((".expected.yaml", ".report.yaml")))


@pytest.fixture
def second_namespace(kube_api: KubeApi) -> Iterator[str]:
    name = kube.create_namespace(kube_api, prefix="vs-convert-b-")
    yield name
    kube.delete_namespace(kube_api, name)


def test_the_converted_corpus_is_accepted_by_the_api_server(
    cluster: Cluster,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    namespace: str,
    second_namespace: str,
) -> None:
    main(["convert", "-o", "json", *[a for p in SOURCES for a in ("-f", str(p))]])
    items = json.loads(capsys.readouterr().out)["items"]
    expected = [
        d for p in SOURCES for d in yaml.safe_load_all((CORPUS / f"{p.stem}.expected.yaml").read_text()) if d
    ]
    assert items == expected
    places = {"convert-corpus": namespace, "convert-corpus-b": second_namespace}
    for item in items:
        if "namespace" in item["metadata"]:
            item["metadata"]["namespace"] = places[item["metadata"]["namespace"]]
    manifest = tmp_path / "converted.json"
    manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    output = cluster.run_kubectl("apply", "--dry-run=server", "-f", str(manifest))
    assert output.count("(server dry run)") == len(items) > 10, output
