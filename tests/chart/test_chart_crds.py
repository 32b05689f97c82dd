"""The chart installs exactly the CRDs in the repository's crds/, and keeps them on uninstall.

crds/ is the single source of truth; the chart carries a byte-for-byte copy in files/crds/
(`make chart-crds`) and its template adds only the `helm.sh/resource-policy: keep`
annotation, so that `helm uninstall` never deletes every ExternalSecret in the cluster.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from tests.chart.helm import CHART, find, render
from tests.env import paths

CHART_CRDS = CHART / "files" / "crds"


def test_chart_crds_are_byte_identical_to_the_repository_crds() -> None:
    ours = {p.name: p.read_bytes() for p in sorted(paths.CRDS.glob("*.yaml"))}
    shipped = {p.name: p.read_bytes() for p in sorted(CHART_CRDS.glob("*.yaml"))}
    assert ours, "crds/ has no CRDs"
    assert shipped.keys() == ours.keys(), "run `make chart-crds`"
    stale = [name for name in ours if shipped[name] != ours[name]]
    assert stale == [], f"run `make chart-crds`: {stale} differ from crds/"


def test_rendered_crds_are_the_repository_crds_annotated_to_be_kept(tmp_path: Path) -> None:
    expected = {}
    for path in paths.CRDS.glob("*.yaml"):
        for crd in yaml.safe_load_all(path.read_text()):
            kept = copy.deepcopy(crd)
            annotations = kept["metadata"].setdefault("annotations", {})
            annotations["helm.sh/resource-policy"] = "keep"
            expected[kept["metadata"]["name"]] = kept

    rendered = {
        crd["metadata"]["name"]: crd for crd in find(render({}, tmp_path), "CustomResourceDefinition")
    }
    assert rendered == expected
