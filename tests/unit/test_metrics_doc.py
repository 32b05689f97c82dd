"""docs/metrics.md documents exactly the metrics operator/vaultsync/metrics.py declares:
the same names (as exposed), types and labels."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.metrics import MetricWrapperBase

from vaultsync import metrics

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
_ROW = re.compile(r"^\| `(vaultsync_[a-z_]+)` \| (\w+) \|([^|]*)\|", re.MULTILINE)


def declared() -> dict[str, tuple[str, tuple[str, ...]]]:
    found = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            kind = value._type
            name = value._name + ("_total" if kind == "counter" else "")
            found[name] = (kind, tuple(value._labelnames))
    return found


def documented() -> dict[str, tuple[str, tuple[str, ...]]]:
    found = {}
    for name, kind, labels in _ROW.findall(DOC.read_text()):
        found[name] = (kind, tuple(re.findall(r"`([a-z_]+)`", labels.split("(")[0])))
    return found


def test_every_declared_metric_is_documented_with_its_type_and_labels() -> None:
    assert declared() == documented()


def test_the_table_is_not_empty() -> None:
    assert len(documented()) >= 15
