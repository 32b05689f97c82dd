"""Every chart value is documented, typed in the schema, and listed in the chart README.

values.yaml is the one place a value is described (`# --` comments); the README table
is generated from it and the schema must know every key, so none of the three drifts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import yaml

from tests.chart.helm import CHART
from tests.env import paths


def test_every_value_is_documented_and_the_readme_table_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(paths.REPO / "mk" / "chart_docs.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def _missing_from_schema(values: dict[str, Any], schema: dict[str, Any], prefix: str) -> list[str]:
    missing = []
    for key, value in values.items():
        entry = schema.get("properties", {}).get(key)
        if entry is None:
            missing.append(prefix + key)
        elif isinstance(value, dict) and "properties" in entry:
            missing += _missing_from_schema(value, entry, f"{prefix}{key}.")
    return missing


def test_the_values_schema_knows_every_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert _missing_from_schema(values, schema, "") == []
