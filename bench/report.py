"""The figures table of docs/benchmarks.md, generated from bench/results/latest.json.

    python -m bench.report            # rewrite the table between the markers in the doc
    python -m bench.report --print    # print it instead

Only the part between `<!-- bench:table:start -->` and `<!-- bench:table:end -->` is
rewritten; the method and the discussion around it are written by hand.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.paths import LATEST, REPO
from bench.scenarios import ROTATION_PERCENTS

DOC = REPO / "docs" / "benchmarks.md"
START, END = "<!-- bench:table:start -->", "<!-- bench:table:end -->"
PEER = "external-secrets"

Check = Callable[[float, dict[str, Any]], bool]


@dataclass(frozen=True)
class Row:
    scenario: str
    figure: str
    label: str
    target: str = ""
    check: Check | None = None


def _params(data: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = data.get("meta", {}).get("params", {})
    return params


ROWS: tuple[Row, ...] = (
    Row(
        "cold_start",
        "seconds_to_all_ready",
        "cold_start: seconds until all Ready",
        "≤ 90",
        lambda v, d: v <= 90,
    ),
    Row(
        "cold_start",
        "provider_read_requests",
        "cold_start: provider read requests (server-side)",
        "≤ M + stores",
        lambda v, d: v <= _params(d).get("m", 0) + 1,
    ),
    Row("cold_start", "provider_keys_read", "cold_start: remote keys read (server-side)"),
    Row("cold_start", "provider_distinct_keys_read", "cold_start: distinct remote keys read"),
    Row("cold_start", "kube_write_requests", "cold_start: Kubernetes write requests (API server)"),
    Row("cold_start", "kube_write_requests_excluding_events", "cold_start: of which Secrets + status"),
    Row("cold_start", "peak_rss_mib", "cold_start: peak RSS (MiB)", "≤ 150", lambda v, d: v <= 150),
    Row("cold_start", "cpu_seconds", "cold_start: CPU seconds"),
    Row("cold_start", "creation_seconds", "cold_start: creating the objects (harness), seconds"),
    Row(
        "steady_state",
        "provider_keys_read_per_cycle",
        "steady_state: remote keys read per refresh cycle",
        "≤ M",
        lambda v, d: v <= _params(d).get("m", 0),
    ),
    Row("steady_state", "provider_read_requests_per_cycle", "steady_state: provider read requests per cycle"),
    Row(
        "steady_state",
        "provider_requests_per_cycle",
        "steady_state: provider requests per cycle, every operation (AWS)",
        "≤ 60",
        lambda v, d: v <= 60,
    ),
    Row("steady_state", "list_secrets_requests_per_cycle", "steady_state: of which ListSecrets"),
    Row("steady_state", "provider_bytes_per_cycle", "steady_state: bytes the provider sent per cycle"),
    Row("steady_state", "aws_monthly_usd", "steady_state: AWS cost per month at list price (USD)"),
    Row(
        "steady_state",
        "kube_writes_per_cycle",
        "steady_state: Kubernetes writes per cycle",
        "0",
        lambda v, d: v == 0,
    ),
    Row(
        "steady_state",
        "operator_counted_kube_writes_per_cycle",
        "steady_state: of which by the operator (its own client counter)",
    ),
    Row("steady_state", "kube_reads_per_cycle", "steady_state: Kubernetes reads (GET/LIST) per cycle"),
    Row("steady_state", "cpu_seconds_per_cycle", "steady_state: CPU seconds per cycle"),
    *(
        Row(
            "steady_rotation",
            f"provider_requests_{percent}pct",
            f"steady_rotation: provider requests in a cycle with {percent} % of keys changed",
        )
        for percent in ROTATION_PERCENTS
    ),
    *(
        Row(
            "steady_rotation",
            f"provider_bytes_{percent}pct",
            f"steady_rotation: bytes the provider sent, {percent} % changed",
        )
        for percent in ROTATION_PERCENTS
    ),
    Row(
        "rotation_fanout",
        "seconds_first_secret_to_last_replicaset",
        "rotation_fanout: first Secret updated → last new ReplicaSet (s)",
        "≤ 5",
        lambda v, d: v <= 5,
    ),
    Row(
        "rotation_fanout",
        "seconds_first_secret_to_last_template_patch",
        "rotation_fanout: first Secret updated → last pod template patched (s)",
    ),
    Row(
        "rotation_fanout", "seconds_put_to_first_secret", "rotation_fanout: PutSecretValue → first Secret (s)"
    ),
    Row(
        "rotation_fanout",
        "seconds_put_to_all_secrets",
        "rotation_fanout: PutSecretValue → all 50 Secrets (s)",
    ),
    Row(
        "rotation_fanout",
        "seconds_put_to_last_replicaset",
        "rotation_fanout: PutSecretValue → last new ReplicaSet (s)",
    ),
    Row(
        "rotation_fanout", "new_replicasets_total", "rotation_fanout: new ReplicaSets (50 Deployments)", "50"
    ),
    Row("rotation_fanout", "provider_keys_read", "rotation_fanout: remote keys read"),
    Row("operator_restart", "seconds_to_all_ready", "operator_restart: seconds until all taken in and Ready"),
    Row(
        "operator_restart",
        "workload_restarts",
        "operator_restart: workload restarts",
        "0",
        lambda v, d: v == 0,
    ),
    Row("operator_restart", "provider_keys_read", "operator_restart: remote keys read in the window"),
    Row(
        "operator_restart",
        "steady_state_keys_read_in_same_window",
        "operator_restart: keys a steady-state window of that length reads",
    ),
    Row(
        "operator_restart", "kube_write_requests", "operator_restart: Kubernetes write requests (API server)"
    ),
    Row(
        "operator_restart",
        "operator_counted_kube_writes",
        "operator_restart: of which by the operator (its own client counter)",
    ),
    Row("memory", "rss_mib_at_0", "memory: RSS at 0 ExternalSecrets (MiB)"),
    Row("memory", "rss_mib_at_1000", "memory: RSS at 1,000 (MiB)"),
    Row("memory", "rss_mib_at_10000", "memory: RSS at 10,000 (MiB)", "≤ 150", lambda v, d: v <= 150),
)


def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:.2f}"


def table(data: dict[str, Any]) -> str:
    ours = data.get("scenarios", {})
    theirs = (data.get("peers", {}).get(PEER) or {}).get("scenarios", {})
    params = _params(data)
    lines = [
        f"Run of {data.get('meta', {}).get('started', '?')}: N={params.get('n')}, M={params.get('m')}, "
        f"{params.get('namespaces')} namespaces, refreshInterval {params.get('refresh')} "
        f"(rotation {params.get('rotation_refresh')}).",
        "",
        "| figure | target | vaultsync | met | External Secrets Operator | ESO / vaultsync |",
        "| --- | --- | ---: | :---: | ---: | ---: |",
    ]
    for row in ROWS:
        mine = ours.get(row.scenario, {}).get(row.figure)
        peer = theirs.get(row.scenario, {}).get(row.figure)
        met = ""
        if row.check is not None and mine is not None:
            met = "yes" if row.check(mine, data) else "**no**"
        ratio = ""
        if mine is not None and peer is not None:
            ratio = f"{peer / mine:.1f}x" if mine else ("inf" if peer else "1x")
        lines.append(f"| {row.label} | {row.target} | {_fmt(mine)} | {met} | {_fmt(peer)} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--print", action="store_true", dest="print_only")
    args = parser.parse_args()
    rendered = table(json.loads(LATEST.read_text()))
    if args.print_only:
        print(rendered)
        return
    text = DOC.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    DOC.write_text(f"{head}{START}\n{rendered}\n{END}{tail}")
    print(f"[bench] table written to {DOC}")


if __name__ == "__main__":
    main()
