"""The exception tree: what went wrong, whether retrying can help, and which reason to report.

Every error the operator raises carries the condition reason it maps to and a
message a person can act on. Messages name fields and keys, never values.
SDK exceptions are converted to these at the boundary where they arise (each
provider module, `kube.py`), so nothing above that boundary sees botocore, hvac,
azure-core or kubernetes exception types.

Nothing here depends on kopf: providers and services raise these, and only the
handler boundary (`kopfboundary.py`) turns them into kopf's retry signals.
Whether an error is worth retrying is its class: `RetryableError` or `PermanentError`.
"""

from __future__ import annotations

import copy
import traceback
from typing import Any, Self

from vaultsync.constants import Reason


class VaultsyncError(Exception):
    """Base: a message safe to show (no secret values) and the condition reason."""

    reason: Reason = Reason.PROVIDER_ERROR

    def __init__(self, message: str, *, reason: Reason | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason

    def at(self, field: str) -> Self:
        """The same error, its message prefixed with the spec field it concerns."""
        clone = copy.copy(self)
        clone.message = f"{field}: {self.message}"
        clone.args = (clone.message,)
        return clone


class RetryableError(VaultsyncError):
    """Transient: network, throttling, server down. Retried with backoff."""

    def __init__(
        self, message: str, *, reason: Reason | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, reason=reason)
        self.retry_after = retry_after


class PermanentError(VaultsyncError):
    """Retrying the same input cannot help; the user has to change something."""


class ProviderError(RetryableError):
    """The vault failed or could not be reached."""

    reason = Reason.PROVIDER_ERROR


class EgressRefused(ProviderError):
    """A store's endpoint may not be reached: a denied address range or a redirect elsewhere.

    Raised below the SDKs (at connect time or by a transport), so it is deliberately not an
    `OSError`: urllib3, requests and aiohttp let it through instead of wrapping it.
    """


class StoreTimeout(ProviderError):
    """A store did not answer within the sync's deadline; the Secret is left as it is."""


class ThrottledError(ProviderError):
    """The vault asked us to slow down; never a missing key."""


class AuthenticationError(ProviderError):
    """Credentials were refused; the store is not ready until they are fixed."""

    reason = Reason.STORE_NOT_READY


class PermissionDenied(ProviderError):
    """The vault accepted the store's identity, but its policy denies this one key.

    It concerns the ExternalSecret that asked, never the store: a client shared with other
    ExternalSecrets is kept (no logout, no new login, no token revoked)."""


class SecretNotFound(PermanentError):
    """The remote key (or the pinned version) does not exist."""

    reason = Reason.KEY_NOT_FOUND


class PropertyNotFound(PermanentError):
    """The remote value exists but has no such property."""

    reason = Reason.PROPERTY_NOT_FOUND


class InvalidSpec(PermanentError):
    """The ExternalSecret or store spec is wrong; the message names the field."""

    reason = Reason.INVALID_SPEC


class InvalidStoreConfig(PermanentError):
    """The store's provider block cannot be used as written."""

    reason = Reason.INVALID_CONFIG


class StoreNotFound(PermanentError):
    reason = Reason.STORE_NOT_FOUND


class StoreNotReady(RetryableError):
    reason = Reason.STORE_NOT_READY


class StoreLoginRefused(StoreNotReady):
    """The vault refused the store's own credentials at login; retried after a backoff."""


class StoreNotAllowed(PermanentError):
    reason = Reason.STORE_NOT_ALLOWED


class TemplateError(PermanentError):
    reason = Reason.TEMPLATE_ERROR


class RendererUnavailable(RetryableError):
    """A template was not rendered now: the render workers were busy or did not start."""

    reason = Reason.TEMPLATE_ERROR


class TargetConflict(PermanentError):
    reason = Reason.TARGET_CONFLICT


class SecretTooLarge(PermanentError):
    reason = Reason.SECRET_TOO_LARGE


class SecretImmutable(PermanentError):
    """`target.immutable`: the Secret keeps the data it was created with; new data is refused."""

    reason = Reason.SECRET_IMMUTABLE


class CredentialNotFound(PermanentError):
    """A Secret or ServiceAccount that a store's auth block names is missing."""

    reason = Reason.STORE_NOT_READY


class KubeNotFound(PermanentError):
    """A Kubernetes object the operator asked for does not exist."""

    reason = Reason.KUBERNETES_ERROR


class KubeConflict(RetryableError):
    """Optimistic concurrency lost (409) or the object already exists; read again and retry."""

    reason = Reason.KUBERNETES_ERROR


class KubeForbidden(PermanentError):
    """The API server refused (403): RBAC, a quota or an admission policy; names the verb and resource."""

    reason = Reason.KUBERNETES_ERROR


class KubeError(RetryableError):
    """Any other API server failure (5xx, timeouts, connection refused)."""

    reason = Reason.KUBERNETES_ERROR


class NotLeader(KubeError):
    """A write refused inside the operator: this replica does not hold the leader Lease."""


class KubeInvalid(PermanentError):
    """The API server refused a write as invalid (422); the message names the fields, not values."""

    reason = Reason.KUBERNETES_ERROR


class HmacKeyUnusable(PermanentError):
    """The operator's HMAC key Secret exists but holds no usable key; it is never overwritten."""


def crash_fields(exc: BaseException) -> dict[str, Any]:
    """What may be logged of an unexpected exception: its type and frames, never its
    message, as an SDK's or a response's message may quote a secret value."""
    return {"error": type(exc).__name__, "traceback": "".join(traceback.format_tb(exc.__traceback__))}
