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

# Labels on the Secrets vaultsync writes; the operator watches only these.
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "vaultsync"
LABEL_OWNER_NAME = f"{GROUP}/external-secret"

# Annotations.
ANNOTATION_FORCE_SYNC = f"{GROUP}/force-sync"
ANNOTATION_DATA_FINGERPRINT = f"{GROUP}/data-fingerprint"
ANNOTATION_MANAGED_KEYS = f"{GROUP}/managed-keys"
ANNOTATION_RELOAD = f"{GROUP}/reload"
ANNOTATION_AUTO_RELOAD = f"{GROUP}/auto-reload"
ANNOTATION_RESTARTED_AT = f"{GROUP}/restarted-at"
ANNOTATION_RESTART_FINGERPRINT = f"{GROUP}/restart-fingerprint"
ANNOTATION_SEEN_FINGERPRINTS = f"{GROUP}/seen-fingerprints"

# kopf keeps its progress here; a prefix of our own keeps it recognisable.
KOPF_PERSISTENCE_PREFIX = f"kopf.{GROUP}"

# The operator's own data-HMAC key lives in this Secret in its namespace.
HMAC_KEY_SECRET = "vaultsync-hmac-key"
HMAC_KEY_FIELD = "key"

# The provider whose "remote" values are written in the store itself: off unless enabled.
FAKE_PROVIDER = "fake"

# A Secret's whole object may not exceed 1 MiB in etcd; leave room for metadata.
SECRET_SIZE_LIMIT = 1024 * 1024

CONDITION_READY = "Ready"


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
