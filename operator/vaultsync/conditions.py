"""The one `Ready` condition and the API's timestamps, written once for every kind.

ExternalSecrets, SecretStores and ClusterSecretStores each carry one `Ready`
condition whose `lastTransitionTime` moves only when its status flips; the
scheduler reads it back to resume at start. Kubernetes writes `metav1.Time` with
whole seconds and `metav1.MicroTime` with microseconds. Each of these used to
be spelled out in three or four modules; a reader now finds them here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from vaultsync import constants as c


def timestamp(moment: datetime | None = None) -> str:
    """A `metav1.Time` (RFC 3339, whole seconds, UTC); now if no moment is given."""
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time(moment: datetime | None = None) -> str:
    """A `metav1.MicroTime` as the API server writes it (Events, Leases)."""
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(stamp: str) -> datetime:
    """A `metav1.Time` or `MicroTime` as written by `timestamp` / `micro_time` (or the API server)."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def ready_condition(status: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The `Ready` condition of a status, if it has one."""
    for condition in (status or {}).get("conditions") or []:
        if isinstance(condition, Mapping) and condition.get("type") == c.CONDITION_READY:
            return condition
    return None


def is_ready(status: Mapping[str, Any] | None) -> bool:
    condition = ready_condition(status)
    return condition is not None and condition.get("status") == "True"


def ready(
    old_status: Mapping[str, Any] | None, ok: bool, reason: str, message: str, now: datetime | None = None
) -> dict[str, Any]:
    """The new `Ready` condition; `lastTransitionTime` is kept unless the status flips."""
    state = "True" if ok else "False"
    previous = ready_condition(old_status)
    transition = (
        previous["lastTransitionTime"]
        if previous is not None and previous.get("status") == state and previous.get("lastTransitionTime")
        else timestamp(now)
    )
    return {
        "type": c.CONDITION_READY,
        "status": state,
        "reason": reason,
        "message": message,
        "lastTransitionTime": transition,
    }
