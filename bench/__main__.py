"""`python -m bench` (what `make bench` runs): every scenario for vaultsync, then for each peer.

    python -m bench                       # the recorded size: N=10,000, M=1,000, 100 namespaces
    python -m bench --n 500 --m 50        # a quick run while developing
    python -m bench --no-peers            # vaultsync only
    python -m bench --scenarios cluster_fanout   # 1 ClusterExternalSecret x 100 namespaces, with ESO
    python -m bench --provider azure      # vaultsync against Azure Key Vault (or vault: OpenBao)

Figures go to bench/results/latest.json after each scenario; a summary table is printed at
the end. Every process the run starts (cluster, the vault server, operators) is stopped when it ends.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import aws, azure, cluster, clusterfanout, configwatch, kube, procstat, vault
from bench.operators import (
    CREDS_NAMESPACE,
    ExternalSecretsOperator,
    Operator,
    Vaultsync,
)
from bench.paths import LATEST, REPO, RESULTS
from bench.peers import build
from bench.remote import Remote
from bench.results_file import Results
from bench.scenarios import ROTATION_PERCENTS, Params, Suite

RATIO_FIGURES: dict[str, tuple[str, ...]] = {
    "cold_start": (
        "seconds_to_all_ready",
        "provider_read_requests",
        "provider_keys_read",
        "kube_write_requests",
        "peak_rss_mib",
        "cpu_seconds",
    ),
    "steady_state": (
        "provider_requests_per_cycle",
        "provider_bytes_per_cycle",
        "aws_monthly_usd",
        "azure_throttle_share",
        "provider_read_requests_per_cycle",
        "provider_keys_read_per_cycle",
        "kube_writes_per_cycle",
        "cpu_seconds_per_cycle",
        "rss_mib",
    ),
    "steady_rotation": tuple(f"provider_requests_{p}pct" for p in ROTATION_PERCENTS),
    "rotation_fanout": ("seconds_put_to_all_secrets", "provider_keys_read"),
    "operator_restart": ("seconds_to_all_ready", "provider_keys_read", "kube_write_requests", "cpu_seconds"),
    "memory": ("rss_mib_at_0", "rss_mib_at_1000", "rss_mib_at_10000"),
    "cluster_fanout": (
        "seconds_to_all_ready",
        "provider_requests_to_all_ready",
        "provider_requests_per_cycle",
    ),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--n", type=int, default=10_000, help="ExternalSecrets in the main load")
    parser.add_argument("--m", type=int, default=1_000, help="distinct remote keys")
    parser.add_argument("--namespaces", type=int, default=100)
    parser.add_argument("--refresh", type=int, default=60, help="refreshInterval of the main load, seconds")
    parser.add_argument("--steady-cycles", type=int, default=3)
    parser.add_argument("--rotation-refresh", type=int, default=10, help="refreshInterval in rotation_fanout")
    parser.add_argument("--ready-timeout", type=float, default=600.0)
    parser.add_argument("--memory-points", default="0,1000", help="extra RSS points (ExternalSecrets)")
    parser.add_argument(
        "--scenarios",
        default="memory,cluster_fanout,cold_start,steady_state,steady_rotation,rotation_fanout,operator_restart",
        help="which scenarios to run (cold_start is needed by the ones after it)",
    )
    parser.add_argument(
        "--rotation-timeout", type=float, default=120.0, help="seconds to wait for a rotation"
    )
    parser.add_argument(
        "--provider",
        choices=PROVIDERS,
        default="aws",
        help="the vault read: aws (moto), vault (OpenBao) or azure (the Key Vault emulator); "
        "the peers are measured against aws only",
    )
    parser.add_argument(
        "--output",
        default="",
        help="results file (default: bench/results/latest.json, latest-<provider>.json for another)",
    )
    parser.add_argument("--no-peers", action="store_true", help="measure vaultsync only")
    parser.add_argument("--peers-only", action="store_true", help="measure the peers only")
    parser.add_argument(
        "--keep-peers",
        action="store_true",
        help="with --no-peers: keep the peers' figures of the previous run in latest.json",
    )
    parser.add_argument("--keep-cluster", action="store_true", help="leave the bench cluster running")
    parser.add_argument(
        "--config-objects", type=int, default=10_000, help="config_watch: ConfigMaps + unmanaged Secrets"
    )
    parser.add_argument(
        "--config-referenced", type=int, default=100, help="config_watch: ConfigMaps opted-in workloads name"
    )
    return parser.parse_args(argv)


PROVIDERS = ("aws", "vault", "azure")


def _remote(provider: str) -> Remote:
    if provider == "vault":
        return vault.OpenBao()
    if provider == "azure":
        return azure.AzureVault()
    return aws.Moto()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.provider != "aws" and not args.no_peers:
        print(f"[bench] peers are measured against aws only: --provider {args.provider} runs vaultsync alone")
        args.no_peers = True
    output = Path(args.output) if args.output else LATEST
    if args.provider != "aws" and not args.output:
        output = RESULTS / f"latest-{args.provider}.json"
    params = Params(
        n=args.n,
        m=args.m,
        namespaces=args.namespaces,
        refresh=f"{args.refresh}s",
        refresh_seconds=float(args.refresh),
        steady_cycles=args.steady_cycles,
        rotation_refresh=f"{args.rotation_refresh}s",
        ready_timeout=args.ready_timeout,
        memory_points=tuple(int(x) for x in args.memory_points.split(",") if x),
        rotation_timeout=args.rotation_timeout,
        config_objects=args.config_objects,
        config_referenced=args.config_referenced,
    )
    results = Results(output)
    if (args.peers_only or args.keep_peers) and LATEST.is_file():
        previous = json.loads(LATEST.read_text())
        if args.peers_only:  # keep vaultsync's figures from the previous run
            results.data["scenarios"] = previous.get("scenarios", {})
            results.data["notes"] = {
                k: v for k, v in previous.get("notes", {}).items() if k.startswith("vaultsync")
            }
            results.meta(vaultsync_figures_from_run=previous.get("meta", {}).get("started"))
        else:  # keep the peers' figures from the previous run
            results.data["peers"] = previous.get("peers", {})
            results.data["notes"] = {
                k: v for k, v in previous.get("notes", {}).items() if not k.startswith("vaultsync")
            }
            results.meta(
                peer_figures_from_run=previous.get("meta", {}).get("started"),
                peer_figures_load_average=previous.get("meta", {}).get("load_average_at_start"),
            )
    results.meta(
        started=datetime.now(UTC).isoformat(timespec="seconds"),
        params={k: v for k, v in vars(params).items()},
        load_average_at_start=list(procstat.load_average()),
        kube_controller_manager_args=cluster.CONTROLLER_MANAGER_ARGS,
        command=" ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
        vaultsync_commit=_git("rev-parse", "--short", "HEAD"),
        vaultsync_uncommitted=_git("status", "--short", "--", "operator").splitlines(),
        provider=args.provider,
    )
    remote = _remote(args.provider)
    operators: list[Operator] = []
    try:
        cluster.up()
        crds = _install_crds(results, with_peers=not args.no_peers)
        remote.start()
        seeded = time.monotonic()
        remote.seed(params.m)
        results.meta(seed_seconds=round(time.monotonic() - seeded, 1), provider_url_is_loopback=True)
        kube.apply_all([_namespace(CREDS_NAMESPACE), *remote.credentials()])
        if not args.peers_only:
            vaultsync = Vaultsync(moto_url=getattr(remote, "url", ""))
            vaultsync.provider = remote.vaultsync_provider()
            operators.append(vaultsync)
            _run_suite(vaultsync, "vs", params, remote, results, args.scenarios.split(","))
        if not args.no_peers and isinstance(remote, aws.Moto):
            eso = _eso(remote, results) if crds else None
            if eso is not None:
                operators.append(eso)
                _run_suite(eso, "eso", params, remote, results, args.scenarios.split(","))
            reason = build.reloader_unavailable()
            results.peer_meta(
                "reloader",
                module=build.RELOADER_MODULE,
                available=reason is None,
                reason=reason or "served, but the harness has no wrapper module for it yet",
            )
        _ratios(results)
        results.meta(
            finished=datetime.now(UTC).isoformat(timespec="seconds"),
            load_average_at_end=list(procstat.load_average()),
        )
        print(summary(results.data))
        return 0
    except Exception:
        traceback.print_exc()
        results.meta(error=traceback.format_exc(limit=3))
        return 1
    finally:
        for op in operators:
            op.stop()
        remote.stop()
        if not args.keep_cluster:
            cluster.down()


def _git(*args: str) -> str:
    result = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
    return result.stdout.strip()


def _namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def _install_crds(results: Results, with_peers: bool) -> bool:
    """Installs vaultsync's CRDs and, `with_peers`, ESO's; whether ESO's are installed (its
    suite must not start without them: "no matches for kind ClusterSecretStore")."""
    cluster.kubectl_ok("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    crds = ["externalsecrets.vaultsync.io"]
    if with_peers:
        try:
            bundle = build.eso_crds()
        except build.PeerUnavailable as exc:
            results.peer_meta("external-secrets", available=False, reason=str(exc))
            with_peers = False
        else:
            cluster.kubectl_ok("apply", "--server-side", "--force-conflicts", "-f", str(bundle), timeout=300)
            crds += ["externalsecrets.external-secrets.io", "clustersecretstores.external-secrets.io"]
    for crd in crds:
        cluster.kubectl_ok("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
    return with_peers


def _eso(moto: aws.Moto, results: Results) -> ExternalSecretsOperator | None:
    try:
        binary = build.ensure(build.ESO)
    except build.PeerUnavailable as exc:
        results.peer_meta("external-secrets", available=False, reason=str(exc))
        return None
    eso = ExternalSecretsOperator(moto_url=moto.url)
    eso.binary = binary
    results.peer_meta(
        "external-secrets",
        available=True,
        module=build.ESO.requires,
        version=build.ESO.version,
        binary=str(binary),
        flags=" ".join(eso.command()[1:]).replace(f"127.0.0.1:{eso.metrics_port}", "127.0.0.1:<port>"),
        endpoint="AWS_SECRETSMANAGER_ENDPOINT / AWS_STS_ENDPOINT environment of the process",
    )
    return eso


def _run_suite(
    op: Operator, prefix: str, params: Params, remote: Remote, results: Results, scenarios: list[str]
) -> None:
    print(f"[bench] ==== {op.name} ====", flush=True)
    kube.apply_all([op.cluster_store()])
    suite = Suite(op, prefix, params, remote, results)
    try:
        if "memory" in scenarios:
            for count in params.memory_points:
                if count < params.n:
                    suite.memory_point(count)
        if "config_watch" in scenarios and op.name == "vaultsync":
            figures = configwatch.run(
                op,
                prefix,
                params.config_objects,
                params.config_referenced,
                params.namespaces,
                lambda text: suite.note("config_watch", text),
            )
            suite.record("config_watch", figures)
        if "cluster_fanout" in scenarios:
            figures = clusterfanout.run(
                op,
                prefix,
                params.namespaces,
                float(params.rotation_refresh.rstrip("s")),
                params.steady_cycles,
                remote,
                params.ready_timeout,
                lambda text: suite.note("cluster_fanout", text),
            )
            suite.record("cluster_fanout", figures)
        if "cold_start" not in scenarios:
            return
        suite.cold_start()
        if "steady_state" in scenarios:
            suite.steady_state()
        if "steady_rotation" in scenarios:
            suite.steady_rotation()
        if "rotation_fanout" in scenarios:
            suite.rotation_fanout()
        if "operator_restart" in scenarios:
            suite.operator_restart()
        if "memory" in scenarios:
            suite.finish_memory()
    finally:
        suite.cleanup()


def _ratios(results: Results) -> None:
    ratios: dict[str, dict[str, dict[str, float]]] = {}
    ours = results.data["scenarios"]
    for peer, data in results.data["peers"].items():
        theirs = data.get("scenarios") or {}
        for scenario, figures in RATIO_FIGURES.items():
            for figure in figures:
                a, b = ours.get(scenario, {}).get(figure), theirs.get(scenario, {}).get(figure)
                if a is None or b is None:
                    continue
                ratio = b / a if a else float("inf") if b else 1.0
                ratios.setdefault(peer, {}).setdefault(scenario, {})[figure] = (
                    round(ratio, 2) if ratio != float("inf") else -1.0
                )
    results.data["ratios"] = ratios
    results.data["notes"]["ratios"] = "peer figure / vaultsync figure; -1 means vaultsync's figure is 0"
    results.save()


def summary(data: dict[str, Any]) -> str:
    lines = ["", "scenario          figure                                     vaultsync        peers"]
    peers = data.get("peers", {})
    for scenario, figures in data.get("scenarios", {}).items():
        for figure, value in figures.items():
            others = []
            for peer, pdata in peers.items():
                other = (pdata.get("scenarios") or {}).get(scenario, {}).get(figure)
                if other is not None:
                    others.append(f"{peer}={other:g}")
            lines.append(f"{scenario:17} {figure:42} {value:>10g}   {' '.join(others)}")
    for peer, pdata in peers.items():
        if not (pdata.get("meta") or {}).get("available", True):
            lines.append(f"{peer}: not measured: {pdata['meta'].get('reason')}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
