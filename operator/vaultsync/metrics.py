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
RELOAD_DIGESTS = Gauge(
    "vaultsync_reload_digests",
    "ConfigMaps and unmanaged Secrets remembered (as digests) because an opted-in workload references them.",
)
