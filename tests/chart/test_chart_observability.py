"""The chart's optional PrometheusRule and Grafana dashboard: off by default, and checked by
the tools of their ecosystems.

The alert rules are rendered by helm and given to promtool (built from the Go module proxy,
like the other test tools): `promtool check rules`, then `promtool test rules` with series
that must fire each alert, and series that must not (another release's namespace, a healthy
operator). The dashboard's JSON is checked for Grafana's structure, every PromQL expression
parsed by promtool, and every metric it or an alert queries must be one metrics.py declares.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.helm import CHART, HelmFailed, find, only, render
from tests.env import tools
from tests.unit.test_metrics_doc import declared

NAMESPACE = "vaultsync"
ENABLED = {
    "metrics": {
        "prometheusRule": {"enabled": True, "labels": {"release": "prom"}},
        "dashboard": {"enabled": True},
        "perExternalSecret": {"enabled": True, "maxSeries": 50},
    }
}
_METRIC = re.compile(r"\bvaultsync_[a-z_]+")
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    tools.ensure_module(tools.PROMTOOL_MODULE)
    binary = tools.PROMTOOL_MODULE.tools[0].current
    return subprocess.run(
        [str(binary), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def rules(tmp_path: Path, **values: Any) -> dict[str, Any]:
    chart_values = {"metrics": {"prometheusRule": {"enabled": True, **values}}}
    spec: dict[str, Any] = only(render(chart_values, tmp_path), "PrometheusRule")["spec"]
    return spec


def unknown_metrics(expressions: list[str]) -> set[str]:
    known = declared()
    histograms = {name for name, (kind, _) in known.items() if kind == "histogram"}
    found = {m for e in expressions for m in _METRIC.findall(e)}
    return {
        m
        for m in found
        if m not in known
        and not any(m.endswith(s) and m.removesuffix(s) in histograms for s in _HISTOGRAM_SUFFIXES)
    }


def test_nothing_is_rendered_or_enabled_by_default(tmp_path: Path) -> None:
    manifests = render({}, tmp_path)
    assert find(manifests, "PrometheusRule") == []
    assert [m for m in find(manifests, "ConfigMap") if m["metadata"]["name"].endswith("-dashboard")] == []
    args = only(manifests, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not any("external-secret-metrics" in a for a in args)


def test_enabled_they_render_with_their_labels_and_the_operator_flags(tmp_path: Path) -> None:
    manifests = render(ENABLED, tmp_path)
    rule = only(manifests, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "prom"
    dashboard = only(manifests, "ConfigMap", "vs-vaultsync-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["vaultsync.json"])["uid"] == "vaultsync-overview"
    args = only(manifests, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--external-secret-metrics" in args
    assert "--external-secret-metrics-max-series=50" in args


def test_the_stale_threshold_is_one_the_operator_exports(tmp_path: Path) -> None:
    stale = next(
        r
        for r in rules(tmp_path, staleIntervals=10)["groups"][0]["rules"]
        if r["alert"] == "VaultsyncStaleSecrets"
    )
    assert 'intervals="10"' in stale["expr"]
    with pytest.raises(HelmFailed, match="staleIntervals"):
        rules(tmp_path, staleIntervals=5)


def test_every_alert_queries_only_metrics_the_operator_exports(tmp_path: Path) -> None:
    exprs = [r["expr"] for g in rules(tmp_path)["groups"] for r in g["rules"]]
    assert len(exprs) == 6
    assert unknown_metrics(exprs) == set()


def test_promtool_accepts_the_rendered_rules(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules(tmp_path)))
    checked = promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 6 rules found" in checked.stdout + checked.stderr


def series(name: str, values: str, namespace: str = NAMESPACE, **labels: str) -> dict[str, str]:
    pairs = ",".join(f'{k}="{v}"' for k, v in {"namespace": namespace, "pod": "vs-0", **labels}.items())
    return {"series": f"{name}{{{pairs}}}", "values": values}


# One minute per sample. Each line is a situation, with the alert it must (not) raise.
SERIES = [
    series("vaultsync_syncs_total", "0+10x60", reason="KeyNotFound"),  # failing all along
    series("vaultsync_syncs_total", "0+10x60", reason="Synced"),  # never an alert
    series("vaultsync_syncs_total", "0+10x60", namespace="other-release", reason="ProviderError"),
    series("vaultsync_external_secrets_stale", "0x10 2x50", intervals="3"),  # from minute 11
    series("vaultsync_external_secrets_stale", "5x60", intervals="1"),  # not the chosen threshold
    series("vaultsync_external_secrets_stale", "7x60", namespace="other-release", intervals="3"),
    series("vaultsync_provider_throttled_total", "0+1x60", provider="aws"),
    series("vaultsync_provider_throttled_total", "0x60", provider="vault"),  # no new throttling
    series("vaultsync_restart_backlog", "1x20 0x5 4x35"),  # 20 minutes waiting is not 30
    series("vaultsync_leader_acquisitions_total", "1x9 2x9 3x9 4x9 5x20"),  # 4 changes in an hour
    series("vaultsync_leader", "1x20 0x40"),
    series("vaultsync_leader", "0x30 1x30", pod="vs-1"),  # nobody leads from minute 21 to 30
]
# (minute, alert, labels of each firing alert, $value of each)
EXPECTED: list[tuple[int, str, list[dict[str, str]], list[str]]] = [
    (10, "VaultsyncSyncFailures", [], []),
    (30, "VaultsyncSyncFailures", [{"reason": "KeyNotFound"}], [""]),
    (14, "VaultsyncStaleSecrets", [], []),
    (20, "VaultsyncStaleSecrets", [{}], ["2"]),
    (10, "VaultsyncProviderThrottled", [], []),
    (30, "VaultsyncProviderThrottled", [{"provider": "aws"}], [""]),
    (50, "VaultsyncRestartBacklog", [], []),
    (60, "VaultsyncRestartBacklog", [{}], ["4"]),
    (15, "VaultsyncLeaderChanges", [], []),
    (60, "VaultsyncLeaderChanges", [{}], [""]),
    (24, "VaultsyncNoLeader", [], []),
    (28, "VaultsyncNoLeader", [{}], [""]),
    (40, "VaultsyncNoLeader", [], []),
]


def expanded(text: str, labels: dict[str, str], value: str) -> str:
    """The few template forms the rules use, expanded as Prometheus does."""
    for key, label in labels.items():
        text = text.replace(f"{{{{ $labels.{key} }}}}", label)
    return text.replace("{{ $value }}", value)


def alert_tests(spec: dict[str, Any]) -> dict[str, Any]:
    by_name = {r["alert"]: r for g in spec["groups"] for r in g["rules"]}
    cases = []
    for minute, name, firing, values in EXPECTED:
        rule = by_name[name]
        alerts = []
        for extra, value in zip(firing, values, strict=True):
            labels = {**rule["labels"], **extra}
            if name != "VaultsyncNoLeader":
                labels["namespace"] = NAMESPACE
            annotations = {k: expanded(v, labels, value) for k, v in rule["annotations"].items()}
            alerts.append({"exp_labels": labels, "exp_annotations": annotations})
        cases.append({"eval_time": f"{minute}m", "alertname": name, "exp_alerts": alerts})
    return {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": SERIES, "alert_rule_test": cases}],
    }


def test_each_alert_fires_on_its_condition_and_only_then(tmp_path: Path) -> None:
    spec = rules(tmp_path)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(alert_tests(spec)))
    tested = promtool("test", "rules", "tests.yaml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout + tested.stderr


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CHART / "files" / "grafana-dashboard.json").read_text())
    return loaded


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p["targets"]]


def test_the_dashboard_has_grafanas_structure() -> None:
    board = dashboard()
    assert {"title", "uid", "schemaVersion", "panels", "templating", "time"} <= board.keys()
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)) >= 10
    for panel in board["panels"]:
        assert {"type", "title", "gridPos", "targets", "datasource"} <= panel.keys(), panel["title"]
        assert {"x", "y", "w", "h"} <= panel["gridPos"].keys()
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["targets"] and all(t["expr"] and t["refId"] for t in panel["targets"])
        assert panel["datasource"]["uid"] == "${datasource}"
    variables = {v["name"] for v in board["templating"]["list"]}
    used = {v for e in dashboard_exprs() for v in re.findall(r"\$(\w+)", e)} - {"__rate_interval"}
    assert used <= variables


def test_the_dashboard_queries_only_metrics_the_operator_exports() -> None:
    assert unknown_metrics(dashboard_exprs()) == set()
    assert len(dashboard_exprs()) >= 15


def test_promtool_parses_every_dashboard_expression(tmp_path: Path) -> None:
    concrete = [
        e.replace("$__rate_interval", "5m").replace("$namespace", NAMESPACE) for e in dashboard_exprs()
    ]
    group = {
        "name": "dashboard",
        "rules": [{"record": f"dashboard:expr{i}", "expr": e} for i, e in enumerate(concrete)],
    }
    (tmp_path / "dashboard.yaml").write_text(yaml.safe_dump({"groups": [group]}))
    checked = promtool("check", "rules", "dashboard.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
