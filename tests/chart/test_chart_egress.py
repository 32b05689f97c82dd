"""The chart's `denyEgressCIDRs` reaches the operator, and its default is the operator's own.

Needs only the helm binary. What the operator does with the list is proven in
tests/providers/test_egress.py and tests/e2e/tenancy/test_egress.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.helm import CHART, HelmFailed, only, render
from vaultsync.constants import DEFAULT_DENY_EGRESS_CIDRS

ENV = "VAULTSYNC_DENY_EGRESS_CIDRS"


def operator_env(values: dict[str, Any], tmp_path: Path) -> dict[str, str]:
    deployment = only(render(values, tmp_path), "Deployment", "vs-vaultsync")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", "") for e in container["env"]}


def test_the_default_deny_list_is_the_operators_built_in_one(tmp_path: Path) -> None:
    chart_default = yaml.safe_load((CHART / "values.yaml").read_text())["denyEgressCIDRs"]
    assert tuple(chart_default) == DEFAULT_DENY_EGRESS_CIDRS
    assert operator_env({}, tmp_path)[ENV] == ",".join(DEFAULT_DENY_EGRESS_CIDRS)


def test_an_admin_list_replaces_the_default_and_an_empty_one_denies_nothing(tmp_path: Path) -> None:
    assert (
        operator_env({"denyEgressCIDRs": ["10.0.0.0/8", "fd00::/8"]}, tmp_path)[ENV] == "10.0.0.0/8,fd00::/8"
    )
    assert operator_env({"denyEgressCIDRs": []}, tmp_path)[ENV] == ""


def test_a_value_that_is_not_a_cidr_is_refused_by_the_schema(tmp_path: Path) -> None:
    with pytest.raises(HelmFailed, match="denyEgressCIDRs"):
        render({"denyEgressCIDRs": ["169.254.169.254; rm -rf /"]}, tmp_path)
