"""Operator settings: command-line flags, each with a `VAULTSYNC_*` environment default.

Flags are what a person types; environment variables are what a Helm chart
sets. Both end up in one frozen `Config`, read once at start.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from dataclasses import dataclass

from vaultsync.budget import EVENT_BURST, EVENTS_PER_SECOND
from vaultsync.cache import CACHE_MAX_BYTES
from vaultsync.constants import (
    DEFAULT_DENY_EGRESS_CIDRS,
    EXTERNAL_SECRET_METRICS_MAX_SERIES,
    STORE_CONCURRENCY,
    SYNC_TIMEOUT_SECONDS,
    TEMPLATE_CPU_SECONDS,
    TEMPLATE_MEMORY_MIB,
    TEMPLATE_OUTPUT_BYTES,
    TEMPLATE_WORKERS,
    VALUE_MAX_AGE_SECONDS,
)
from vaultsync.schedule import MIN_REFRESH_SECONDS, parse_duration


@dataclass(frozen=True)
class Config:
    operator_namespace: str
    namespaces: tuple[str, ...]
    health_address: str
    health_port: int
    metrics_port: int
    workers: int
    first_sync_max_age: float
    restart_quiet: float
    restart_window: float
    restarts_per_minute: int
    events_per_second: float
    event_burst: int
    template_cpu_seconds: float
    template_memory_mib: int
    template_output_bytes: int
    template_workers: int
    verbose: bool
    deny_egress_cidrs: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    min_refresh_interval: float = MIN_REFRESH_SECONDS
    cache_max_bytes: int = CACHE_MAX_BYTES
    value_max_age: float = VALUE_MAX_AGE_SECONDS
    store_calls_per_minute: float = 0.0  # 0: no budget unless a store sets spec.callsPerMinute
    service_account: str = ""  # the operator's own ServiceAccount, in operator_namespace
    enable_fake_provider: bool = False
    sync_timeout: float = SYNC_TIMEOUT_SECONDS
    store_concurrency: int = STORE_CONCURRENCY
    leader_elect: bool = True
    leader_election_id: str = "vaultsync"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    external_secret_metrics: bool = False
    external_secret_metrics_max_series: int = EXTERNAL_SECRET_METRICS_MAX_SERIES

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces


def _env(name: str, default: str) -> str:
    return os.environ.get(f"VAULTSYNC_{name}", default)


def duration(text: str) -> float:
    """A Go duration flag (`10s`, `1m`); argparse names this function in its error."""
    return parse_duration(text)


def _positive_duration(text: str) -> float:
    """A Go duration above zero (`--sync-timeout 0s` would fail every sync)."""
    seconds = parse_duration(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError("must be longer than 0s")
    return seconds


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--namespace",
        action="append",
        dest="namespaces",
        default=[n for n in _env("NAMESPACES", "").split(",") if n],
        help="watch only this namespace (repeatable; default: every namespace)",
    )
    parser.add_argument(
        "--operator-namespace",
        default=_env("OPERATOR_NAMESPACE", "vaultsync-system"),
        help="namespace holding the operator's own HMAC key Secret",
    )
    parser.add_argument("--health-address", default=_env("HEALTH_ADDRESS", "0.0.0.0"))  # noqa: S104
    parser.add_argument("--health-port", type=int, default=int(_env("HEALTH_PORT", "8080")))
    parser.add_argument("--metrics-port", type=int, default=int(_env("METRICS_PORT", "9090")))
    parser.add_argument("--workers", type=int, default=int(_env("WORKERS", "32")))
    parser.add_argument(
        "--sync-timeout",
        type=_positive_duration,
        default=_positive_duration(_env("SYNC_TIMEOUT", f"{SYNC_TIMEOUT_SECONDS:g}s")),
        help="at most this long for one sync's store login and reads; then Ready=False naming "
        "the store, the Secret unchanged",
    )
    parser.add_argument(
        "--store-concurrency",
        type=_positive_int,
        default=_positive_int(_env("STORE_CONCURRENCY", str(STORE_CONCURRENCY))),
        help="syncs of one store running at once; a slow store holds no more workers than this",
    )
    parser.add_argument(
        "--first-sync-max-age",
        type=float,
        default=float(_env("FIRST_SYNC_MAX_AGE", "30")),
        help="seconds a cached remote value may be old when a new ExternalSecret first syncs",
    )
    parser.add_argument(
        "--restart-quiet",
        type=float,
        default=float(_env("RESTART_QUIET", "1")),
        help="restart a namespace's workloads once no Secret of it changed for this many seconds",
    )
    parser.add_argument(
        "--restart-window",
        type=float,
        default=float(_env("RESTART_WINDOW", "5")),
        help="seconds after a change by which its workloads are restarted, however often changes continue",
    )
    parser.add_argument(
        "--restarts-per-minute",
        type=int,
        default=int(_env("RESTARTS_PER_MINUTE", "60")),
        help="cap on workload restarts per minute across the cluster (excess is queued)",
    )
    parser.add_argument(
        "--events-per-second",
        type=float,
        default=float(_env("EVENTS_PER_SECOND", str(EVENTS_PER_SECOND))),
        help="Events the operator may post per second, after the burst (excess is dropped and counted)",
    )
    parser.add_argument(
        "--event-burst",
        type=int,
        default=int(_env("EVENT_BURST", str(EVENT_BURST))),
        help="Events the operator may post at once before --events-per-second applies",
    )
    parser.add_argument(
        "--deny-egress-cidr",
        action="append",
        dest="deny_egress_cidrs",
        metavar="CIDR",
        type=_network,
        default=[
            _network(n)
            for n in _env("DENY_EGRESS_CIDRS", ",".join(DEFAULT_DENY_EGRESS_CIDRS)).split(",")
            if n.strip()
        ],
        help="address range (CIDR) that a namespaced SecretStore may not connect to (repeatable; "
        "added to VAULTSYNC_DENY_EGRESS_CIDRS, default: link-local and cloud metadata addresses)",
    )
    parser.add_argument(
        "--min-refresh-interval",
        type=duration,
        default=duration(_env("MIN_REFRESH_INTERVAL", f"{MIN_REFRESH_SECONDS:g}s")),
        help="shorter refreshIntervals are raised to this (a Go duration; 0 keeps meaning sync once)",
    )
    parser.add_argument(
        "--cache-max-bytes",
        type=_positive_int,
        default=_positive_int(_env("CACHE_MAX_BYTES", str(CACHE_MAX_BYTES))),
        help="bytes of remote values the shared cache may hold; least recently used are evicted first",
    )
    parser.add_argument(
        "--value-max-age",
        type=_positive_float,
        default=_positive_float(_env("VALUE_MAX_AGE", str(VALUE_MAX_AGE_SECONDS))),
        help="seconds after which a value change detection still reports unchanged is read again anyway",
    )
    parser.add_argument(
        "--store-calls-per-minute",
        type=float,
        default=float(_env("STORE_CALLS_PER_MINUTE", "0")),
        help="provider calls each store may make per minute (0: no limit); refreshes stretch to fit; "
        "a store's spec.callsPerMinute may lower it",
    )
    parser.add_argument(
        "--template-cpu-seconds",
        type=_positive_float,
        default=_positive_float(_env("TEMPLATE_CPU_SECONDS", str(TEMPLATE_CPU_SECONDS))),
        help="CPU time one ExternalSecret's template may use, all keys together",
    )
    parser.add_argument(
        "--template-memory-mib",
        type=_positive_int,
        default=_positive_int(_env("TEMPLATE_MEMORY_MIB", str(TEMPLATE_MEMORY_MIB))),
        help="memory a render worker may use beyond its own, in MiB",
    )
    parser.add_argument(
        "--template-output-bytes",
        type=_positive_int,
        default=_positive_int(_env("TEMPLATE_OUTPUT_BYTES", str(TEMPLATE_OUTPUT_BYTES))),
        help="bytes one ExternalSecret's template may produce, all keys together",
    )
    parser.add_argument(
        "--template-workers",
        type=_positive_int,
        default=_positive_int(_env("TEMPLATE_WORKERS", str(TEMPLATE_WORKERS))),
        help="render worker processes (started on first use; one namespace uses one at a time)",
    )
    parser.add_argument("--verbose", action="store_true", default=_env("VERBOSE", "") == "true")
    parser.add_argument(
        "--service-account",
        default=_env("SERVICE_ACCOUNT", ""),
        help="the operator's own ServiceAccount (in --operator-namespace): a ClusterSecretStore's "
        "Vault Kubernetes login without serviceAccountRef uses a token requested for it",
    )
    parser.add_argument(
        "--enable-fake-provider",
        action="store_true",
        default=_env("ENABLE_FAKE_PROVIDER", "") == "true",
        help="serve stores with spec.provider.fake (values in the store's own spec): "
        "for development and tests only; off by default",
    )
    _add_leader_election_arguments(parser)
    parser.add_argument(
        "--external-secret-metrics",
        action="store_true",
        default=_env("EXTERNAL_SECRET_METRICS", "") == "true",
        help="export vaultsync_external_secret_ready{namespace,name} per ExternalSecret (docs/metrics.md)",
    )
    parser.add_argument(
        "--external-secret-metrics-max-series",
        type=_positive_int,
        default=int(_env("EXTERNAL_SECRET_METRICS_MAX_SERIES", str(EXTERNAL_SECRET_METRICS_MAX_SERIES))),
        help="at most this many ExternalSecrets get a series; the others are counted in "
        "vaultsync_external_secret_ready_untracked",
    )


def _add_leader_election_arguments(parser: argparse.ArgumentParser) -> None:
    """client-go's leader election flags and defaults (docs/reliability.md, "Leader election")."""
    parser.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=_env("LEADER_ELECT", "true") == "true",
        help="hold a Lease in the operator namespace before doing anything (default: on)",
    )
    parser.add_argument(
        "--leader-election-id",
        default=_env("LEADER_ELECTION_ID", "vaultsync"),
        help="the Lease's name; one per release",
    )
    parser.add_argument(
        "--leader-elect-lease-duration",
        type=duration,
        default=duration(_env("LEADER_ELECT_LEASE_DURATION", "15s")),
        help="how long a standby waits after the Lease last changed before taking it over",
    )
    parser.add_argument(
        "--leader-elect-renew-deadline",
        type=duration,
        default=duration(_env("LEADER_ELECT_RENEW_DEADLINE", "10s")),
        help="how long the leader keeps trying to renew before it stops every write",
    )
    parser.add_argument(
        "--leader-elect-retry-period",
        type=duration,
        default=duration(_env("LEADER_ELECT_RETRY_PERIOD", "2s")),
        help="how often the Lease is renewed or tried",
    )


def _network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(value.strip(), strict=True)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a CIDR range: {exc}") from None


def from_arguments(args: argparse.Namespace) -> Config:
    return Config(
        operator_namespace=args.operator_namespace,
        namespaces=tuple(dict.fromkeys(args.namespaces)),
        health_address=args.health_address,
        health_port=args.health_port,
        metrics_port=args.metrics_port,
        workers=args.workers,
        first_sync_max_age=args.first_sync_max_age,
        restart_quiet=args.restart_quiet,
        restart_window=args.restart_window,
        restarts_per_minute=args.restarts_per_minute,
        events_per_second=args.events_per_second,
        event_burst=args.event_burst,
        template_cpu_seconds=args.template_cpu_seconds,
        template_memory_mib=args.template_memory_mib,
        template_output_bytes=args.template_output_bytes,
        template_workers=args.template_workers,
        verbose=args.verbose,
        deny_egress_cidrs=tuple(dict.fromkeys(args.deny_egress_cidrs)),
        min_refresh_interval=args.min_refresh_interval,
        cache_max_bytes=args.cache_max_bytes,
        value_max_age=args.value_max_age,
        store_calls_per_minute=max(0.0, args.store_calls_per_minute),
        service_account=args.service_account,
        enable_fake_provider=args.enable_fake_provider,
        sync_timeout=args.sync_timeout,
        store_concurrency=args.store_concurrency,
        leader_elect=args.leader_elect,
        leader_election_id=args.leader_election_id,
        lease_duration=args.leader_elect_lease_duration,
        renew_deadline=args.leader_elect_renew_deadline,
        retry_period=args.leader_elect_retry_period,
        external_secret_metrics=args.external_secret_metrics,
        external_secret_metrics_max_series=args.external_secret_metrics_max_series,
    )
