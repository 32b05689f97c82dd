"""Prometheus metrics. Labels carry names and reasons, never values.

Label sets are bounded: namespace/name of ExternalSecrets are not labels (ten
thousand objects would be ten thousand series); per-object state is in status.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SYNCS = Counter("vaultsync_syncs_total", "ExternalSecret reconciles by outcome reason.", ["reason"])
SECRET_WRITES = Counter(
    "vaultsync_secret_writes_total", "Secrets created, updated or deleted.", ["operation"]
)
PROVIDER_CALLS = Counter(
    "vaultsync_provider_calls_total",
    "Calls made to a vault, by provider and operation.",
    ["provider", "operation"],
)
CACHE_LOOKUPS = Counter(
    "vaultsync_cache_lookups_total",
    "Remote value lookups by result: hit, shared (joined an in-flight read) or miss.",
    ["result"],
)
CACHE_BYTES = Gauge(
    "vaultsync_cache_bytes",
    "Bytes of remote values held by the shared cache (capped by --cache-max-bytes).",
)
CACHE_EVICTIONS = Counter(
    "vaultsync_cache_evictions_total",
    "Cached values dropped, least recently used first, to stay under --cache-max-bytes.",
)
KUBE_REQUESTS = Counter(
    "vaultsync_kube_requests_total",
    "Kubernetes API requests by verb and resource.",
    ["verb", "resource"],
)
KUBE_RETRIES = Counter(
    "vaultsync_kube_retries_total",
    "Kubernetes API requests resent, by verb, resource and cause (HTTP status or 'connection').",
    ["verb", "resource", "cause"],
)
EVENTS_DROPPED = Counter(
    "vaultsync_events_dropped_total",
    "Events not posted: the Event budget (--events-per-second, --event-burst) was spent, "
    "or the API server refused them.",
    ["type"],
)
RESTARTS = Counter(
    "vaultsync_workload_restarts_total",
    "Rolling restarts triggered by rotated Secrets.",
    ["namespace", "kind"],
)
SYNC_SECONDS = Histogram("vaultsync_sync_duration_seconds", "Time to reconcile one ExternalSecret.")
QUEUE_DEPTH = Gauge("vaultsync_scheduled_external_secrets", "ExternalSecrets known to the scheduler.")
READY = Gauge("vaultsync_external_secrets_ready", "ExternalSecrets whose Ready condition is True.")
PROVIDER_THROTTLED = Counter(
    "vaultsync_provider_throttled_total",
    "Remote values whose read ended throttled by the vault (after the provider's own retries).",
    ["provider"],
)
LEADER = Gauge("vaultsync_leader", "1 while this process holds the leader Lease (or runs without election).")
LEADER_ACQUISITIONS = Counter(
    "vaultsync_leader_acquisitions_total", "Times this process acquired the leader Lease."
)
RESTART_BACKLOG = Gauge(
    "vaultsync_restart_backlog",
    "Rotations whose workload restarts are waiting: in their coalescing window, for a retry, "
    "or behind the restart cap.",
)
STALE = Gauge(
    "vaultsync_external_secrets_stale",
    "ExternalSecrets not Ready for at least `intervals` of their refresh intervals "
    "(their Secret keeps older data).",
    ["intervals"],
)
EXTERNAL_SECRET_READY = Gauge(
    "vaultsync_external_secret_ready",
    "1 if the ExternalSecret is Ready, else 0; only with --external-secret-metrics, "
    "for at most --external-secret-metrics-max-series ExternalSecrets.",
    ["namespace", "name"],
)
EXTERNAL_SECRET_READY_UNTRACKED = Gauge(
    "vaultsync_external_secret_ready_untracked",
    "ExternalSecrets left without a vaultsync_external_secret_ready series by "
    "--external-secret-metrics-max-series.",
)
STORE_CALLS = Counter(
    "vaultsync_store_calls_total", "Requests made to a store's vault, counted against its budget.", ["store"]
)
STORE_BUDGET = Gauge(
    "vaultsync_store_calls_per_minute_budget",
    "A store's call budget in force (after throttling), calls per minute; -1 for none.",
    ["store"],
)
STORE_THROTTLED = Counter(
    "vaultsync_store_throttled_total",
    "Throttling answers (429, ThrottlingException) from a store's vault.",
    ["store"],
)
STORE_STRETCH = Counter(
    "vaultsync_store_refresh_stretch_seconds_total",
    "Seconds refreshes of a store were moved later to stay within its call budget.",
    ["store"],
)
RELOAD_DIGESTS = Gauge(
    "vaultsync_reload_digests",
    "ConfigMaps and unmanaged Secrets remembered (as digests) because an opted-in workload references them.",
)
