"""Every name the operator writes into the cluster, in one place.

Annotation keys, labels, condition reasons and messages are part of the
contract with users (they appear in `kubectl describe` and in alerts), so they
are defined once here and nowhere else.
"""

from __future__ import annotations

from enum import StrEnum

GROUP = "vaultsync.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

EXTERNAL_SECRETS = "externalsecrets"
SECRET_STORES = "secretstores"
CLUSTER_SECRET_STORES = "clustersecretstores"
KIND_EXTERNAL_SECRET = "ExternalSecret"
KIND_SECRET_STORE = "SecretStore"
KIND_CLUSTER_SECRET_STORE = "ClusterSecretStore"
CLUSTER_EXTERNAL_SECRETS = "clusterexternalsecrets"
KIND_CLUSTER_EXTERNAL_SECRET = "ClusterExternalSecret"

# Labels on the Secrets vaultsync writes; the operator watches only these.
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "vaultsync"
LABEL_OWNER_NAME = f"{GROUP}/external-secret"

# Annotations.
ANNOTATION_FORCE_SYNC = f"{GROUP}/force-sync"
# A force-sync value with this prefix is urgent (`vaultsync respond`, docs/runbooks/leaked-secret.md):
# the re-read bypasses the cache as every force-sync does, and a rotation it finds restarts
# its namespace's workloads after RESTART_URGENT_DELAY_SECONDS instead of --restart-quiet /
# --restart-window, at most once per --restart-window per namespace, under the same cap.
FORCE_SYNC_URGENT_PREFIX = "urgent-"
RESTART_URGENT_DELAY_SECONDS = 0.5
ANNOTATION_DATA_FINGERPRINT = f"{GROUP}/data-fingerprint"
ANNOTATION_MANAGED_KEYS = f"{GROUP}/managed-keys"
ANNOTATION_RELOAD = f"{GROUP}/reload"
ANNOTATION_AUTO_RELOAD = f"{GROUP}/auto-reload"
ANNOTATION_RELOAD_CONFIGMAPS = f"{GROUP}/reload-configmaps"
# Stakater Reloader's annotations, accepted as aliases (docs/rollouts.md lists them).
RELOADER_AUTO = "reloader.stakater.com/auto"
RELOADER_SECRET_AUTO = "secret.reloader.stakater.com/auto"
RELOADER_CONFIGMAP_AUTO = "configmap.reloader.stakater.com/auto"
RELOADER_SECRET_RELOAD = "secret.reloader.stakater.com/reload"
RELOADER_CONFIGMAP_RELOAD = "configmap.reloader.stakater.com/reload"
RELOADER_SEARCH = "reloader.stakater.com/search"
RELOADER_MATCH = "reloader.stakater.com/match"
RELOADER_IGNORE = "reloader.stakater.com/ignore"
# Names one reload annotation may list: a workload cannot make the operator track thousands.
MAX_RELOAD_NAMES = 64
# Concurrent GETs that take the first digest of an object a workload newly references.
REFERENCE_READ_CONCURRENCY = 4
REASON_INVALID_RELOAD = "InvalidReload"  # Warning Event on a workload whose reload annotation is refused
ANNOTATION_RESTARTED_AT = f"{GROUP}/restarted-at"
ANNOTATION_RESTART_FINGERPRINT = f"{GROUP}/restart-fingerprint"
ANNOTATION_SEEN_FINGERPRINTS = f"{GROUP}/seen-fingerprints"
# On a Secret whose data rotated: the new fingerprint, until its opted-in workloads are restarted.
ANNOTATION_PENDING_RESTART = f"{GROUP}/pending-restart"
# A watch's (re-)listing is taken as over once no listed object arrived for this long
# (docs/reliability.md, "Watch gaps").
RELIST_QUIET_SECONDS = 5.0
# On a Secret that creationPolicy Merge writes into: which ExternalSecret's keys it holds.
ANNOTATION_MERGED_BY = f"{GROUP}/merged-by"

# Target Secrets a tenant may not ask for (targets.py says why). Types: these exactly, and
# any type in these DNS domains (or their subdomains) except the built-in types listed.
REFUSED_SECRET_TYPES = (
    "kubernetes.io/service-account-token",
    "bootstrap.kubernetes.io/token",
    "helm.sh/release.v1",
)
RESERVED_TYPE_DOMAINS = ("kubernetes.io", "k8s.io", "helm.sh")
BUILTIN_SECRET_TYPES = (
    "Opaque",
    "kubernetes.io/basic-auth",
    "kubernetes.io/dockercfg",
    "kubernetes.io/dockerconfigjson",
    "kubernetes.io/ssh-auth",
    "kubernetes.io/tls",
)
# Label and annotation keys in these domains (or subdomains) belong to Kubernetes or to
# vaultsync itself; app.kubernetes.io/ is the users' own, except managed-by.
RESERVED_METADATA_DOMAINS = ("kubernetes.io", "k8s.io", GROUP)
USER_METADATA_PREFIX = "app.kubernetes.io/"
# Helm finds its release records by this name prefix and by the label owner=helm.
HELM_RELEASE_NAME_PREFIX = "sh.helm.release.v1."
HELM_OWNER_LABEL = ("owner", "helm")
# creationPolicy Merge writes only into Secrets of this type.
MERGEABLE_SECRET_TYPE = "Opaque"

# kopf keeps its progress here; a prefix of our own keeps it recognisable.
KOPF_PERSISTENCE_PREFIX = f"kopf.{GROUP}"

# The operator's own data-HMAC key lives in this Secret in its namespace.
HMAC_KEY_SECRET = "vaultsync-hmac-key"
HMAC_KEY_FIELD = "key"

# Kubernetes API requests: retries of 429, 5xx and broken connections (docs/reliability.md).
KUBE_RETRY_ATTEMPTS = 6  # sends per request, the first included
KUBE_RETRY_BASE_SECONDS = 0.25  # backoff before the first resend, doubling, full jitter
KUBE_RETRY_MAX_DELAY_SECONDS = 8.0
KUBE_RETRY_AFTER_CAP_SECONDS = 30.0  # a server's Retry-After is honoured up to this
KUBE_RETRY_BUDGET_SECONDS = 45.0  # no resend would start later than this after the first send
# Kubeconfig `exec` credential plugins (client.authentication.k8s.io/v1).
EXEC_PLUGIN_TIMEOUT_SECONDS = 60.0
EXEC_PLUGIN_OUTPUT_LIMIT = 1024 * 1024
# The provider whose "remote" values are written in the store itself: off unless enabled.
FAKE_PROVIDER = "fake"

# A Secret's whole object may not exceed 1 MiB in etcd; leave room for metadata.
SECRET_SIZE_LIMIT = 1024 * 1024
# The API server's limit on all annotations of one object together (keys and values).
ANNOTATIONS_SIZE_LIMIT = 256 * 1024
# Keys one ExternalSecret may write into its Secret (its managed-keys annotation lists them).
SECRET_MAX_KEYS = 1000

CONDITION_READY = "Ready"

# Endpoint fields (vault.server, aws.endpoint, azurekv.vaultUrl, ...) hold an origin only:
# "https://" + a 253-character host name + ":65535", with room to spare.
ORIGIN_MAX_LENGTH = 300

# Addresses a namespaced store may not reach unless the admin says otherwise
# (--deny-egress-cidr, VAULTSYNC_DENY_EGRESS_CIDRS): link-local (IPv4 and IPv6, where
# AWS, GCP, Azure, OpenStack and others serve instance metadata at 169.254.169.254), AWS's
# IPv6 metadata address, Alibaba Cloud's metadata address and Azure's wireserver.
DEFAULT_DENY_EGRESS_CIDRS = (
    "169.254.0.0/16",
    "fe80::/10",
    "fd00:ec2::254/128",
    "100.100.100.200/32",
    "168.63.129.16/32",
)
# Every ServiceAccount token vaultsync requests (TokenRequest) lives this long: the API's
# minimum, so a token a vault server keeps or leaks is useless ten minutes later.
SERVICE_ACCOUNT_TOKEN_SECONDS = 600


class Reason(StrEnum):
    """Reasons of the one `Ready` condition; users alert on these."""

    SYNCED = "Synced"
    PROVIDER_ERROR = "ProviderError"
    STORE_NOT_FOUND = "StoreNotFound"
    STORE_NOT_READY = "StoreNotReady"
    STORE_NOT_ALLOWED = "StoreNotAllowed"
    KEY_NOT_FOUND = "KeyNotFound"
    PROPERTY_NOT_FOUND = "PropertyNotFound"
    TEMPLATE_ERROR = "TemplateError"
    INVALID_SPEC = "InvalidSpec"
    TARGET_CONFLICT = "TargetConflict"
    SECRET_TOO_LARGE = "SecretTooLarge"
    # The Kubernetes API server refused or failed a request (403, 409, 422, 5xx); the message
    # names the operation and, for a 422, the field at fault.
    KUBERNETES_ERROR = "KubernetesError"
    SECRET_IMMUTABLE = "SecretImmutable"
    # Store conditions.
    VALID = "Valid"
    INVALID_CONFIG = "InvalidConfig"


# Templates: what one tenant's `spec.target.template` may cost (docs/security/templates.md).
# The source size and key count are also the CRD's maxLength and maxProperties.
TEMPLATE_MAX_KEYS = 256
TEMPLATE_MAX_SOURCE_BYTES = 64 * 1024
TEMPLATE_CPU_SECONDS = 1.0
TEMPLATE_MEMORY_MIB = 64
TEMPLATE_OUTPUT_BYTES = SECRET_SIZE_LIMIT
TEMPLATE_WORKERS = 2
# A render is killed after this many times its CPU limit in wall-clock time: the worker runs
# at a lower priority, so on a busy node its CPU second may take several.
TEMPLATE_WALL_CLOCK_FACTOR = 10
# `*` and `**` refuse integers longer than this, before computing them (Python prints at
# most 4300 digits of an int anyway, about 14,300 bits).
TEMPLATE_MAX_INT_BITS = 16 * 1024
# templateFrom: entries, items per ConfigMap/Secret, and the bytes of template sources one
# ExternalSecret may read from ConfigMaps and Secrets, all together (each source is also at
# most TEMPLATE_MAX_SOURCE_BYTES, and all keys together at most TEMPLATE_MAX_KEYS).
TEMPLATE_FROM_MAX_ENTRIES = 16
TEMPLATE_FROM_MAX_ITEMS = 64
TEMPLATE_FROM_MAX_TOTAL_BYTES = 256 * 1024

# Bulkheads: a slow or hanging store delays only its own ExternalSecrets.
SYNC_TIMEOUT_SECONDS = 60.0  # one sync's store login and reads, at most (--sync-timeout)
# Syncs of one store running at once (--store-concurrency): half the 32 workers. With 8, one
# store's cold start batched less (bench: 733 reads for 1,000 keys, 397 without the limit).
STORE_CONCURRENCY = 16
STORE_THREADS = 4  # threads of one store client's blocking SDK calls
STORE_STATUS_TIMEOUT_SECONDS = 30.0  # one store's validation in housekeeping

# Per-ExternalSecret metrics (--external-secret-metrics): series at most, and the failure
# lengths, in refresh intervals, that vaultsync_external_secrets_stale counts.
EXTERNAL_SECRET_METRICS_MAX_SERIES = 1000
STALE_INTERVALS = (1, 3, 10)

# A value confirmed current by change detection is still read again after this long
# (--value-max-age): the safety net for a stamp that failed to change.
VALUE_MAX_AGE_SECONDS = 24 * 3600.0

# Per-store call budgets (vaultsync.callbudget): a throttling answer multiplies the rate by
# BUDGET_DECREASE; each BUDGET_RECOVER_SECONDS without one adds BUDGET_INCREASE of the limit.
BUDGET_DECREASE = 0.5
BUDGET_INCREASE = 0.1
BUDGET_RECOVER_SECONDS = 10.0
BUDGET_MIN_PER_MINUTE = 1.0
# spec.callsPerMinute of a store: at most this (the operator's own limit still applies).
STORE_CALLS_PER_MINUTE_MAX = 100_000
# A store that cannot keep its refresh intervals within its budget says so at most this often.
BUDGET_WARNING_SECONDS = 600.0
REASON_CALL_BUDGET = "CallBudgetExceeded"  # the Warning Event of a store stretched by its budget

# ClusterExternalSecret (clustersecrets.py): the label on the ExternalSecrets it provisions
# (its uid: a label value holds 63 characters, a name 253), its limits and its refresh.
LABEL_CLUSTER_EXTERNAL_SECRET = f"{GROUP}/cluster-external-secret-uid"
CLUSTER_ES_MAX_NAMESPACES = 1000
CLUSTER_ES_MAX_SELECTORS = 16
CLUSTER_ES_MAX_METADATA_ENTRIES = 64
CLUSTER_ES_MAX_REASON_LENGTH = 512
CLUSTER_ES_REFRESH_DEFAULT = "1m"
CLUSTER_ES_REFRESH_MIN_SECONDS = 5.0
CLUSTER_ES_CONCURRENCY = 8  # ExternalSecret writes of one ClusterExternalSecret at once
CLUSTER_ES_DEBOUNCE_SECONDS = 0.5  # namespace events arriving together make one pass
REASON_NAMESPACES_FAILED = "NamespacesFailed"

# dataFrom.find and dataFrom.rewrite (docs/api.md, "Finding remote keys"): what one tenant's
# patterns and listings may cost. A regexp runs on RE2, linear in the input (tenantregexp.py).
REGEXP_MAX_LENGTH = 256  # also the CRD's maxLength of find.name.regexp and rewrite sources
REGEXP_MAX_MEM = 1 << 20  # RE2's max_mem: the compiled program and its DFA's cache, per pattern
# Work of one listing's name matching, and of all the rewrites of one ExternalSecret's sync
# together, in bytes read times program instructions (RE2's bound when its DFA gives up) plus
# REGEXP_SEARCH_UNITS per search; the worst patterns measured here take 1-3 ns a unit (`make
# bench-regexps`), so about 0.9 s at most. 10,000 names of 40 bytes against a 17-instruction
# pattern cost 27,000,000 (40 ms). Bytes alone would not do: the cost of a byte grows with
# the program, from 10 to 18,000 instructions within REGEXP_MAX_MEM.
REGEXP_WORK_BUDGET = 300_000_000
REGEXP_SEARCH_UNITS = 2000  # one search's call through RE2's wrapper (about 4 µs)
FIND_MAX_KEYS = 500  # remote keys one ExternalSecret's find entries may match together
FIND_MAX_LISTED = 10_000  # names one listing may return before it is refused as too broad
FIND_MAX_TAGS = 16
REWRITE_MAX_ITEMS = 16  # rewrite operations of one dataFrom entry
REWRITE_TEMPLATE_MAX_BYTES = 4096

# The audit of values served from the cache (audit.py): a hit like the last one logged (same
# reader, store, keys and versions) is logged again after this; at most this many are
# remembered (about 100 bytes each), past which everything is logged once more.
CACHE_HIT_REPEAT_SECONDS = 3600.0
CACHE_HITS_REMEMBERED = 200_000
