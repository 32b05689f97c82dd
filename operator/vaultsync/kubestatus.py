"""What of an API server's 422 or 403 `Status` may be reported: the fields at fault or who
refused, never values.

A rejected write is only fixable when the message says which field is wrong
(`metadata.annotations: Too long`), and the API server says so in
`details.causes[].field`. Its messages, though, quote the rejected value
(`Invalid value: "the value"`), and the value may be secret data or a tenant's
template output. So only the field path and the cause's `reason` (a fixed
vocabulary such as `FieldValueTooLong`) are kept, translated to fixed words here;
every `message` of the Status is dropped.
"""

from __future__ import annotations

import json
import re
from typing import Any

# apimachinery's field.ErrorType values, as the words of its own messages.
CAUSE_WORDS = {
    "FieldValueNotFound": "Not found",
    "FieldValueRequired": "Required value",
    "FieldValueDuplicate": "Duplicate value",
    "FieldValueInvalid": "Invalid value",
    "FieldValueNotSupported": "Unsupported value",
    "FieldValueForbidden": "Forbidden",
    "FieldValueTooLong": "Too long",
    "FieldValueTooMany": "Too many",
    "FieldValueTypeInvalid": "Invalid value type",
    "InternalError": "Internal error",
}
MAX_CAUSES = 5
MAX_FIELD_LENGTH = 256
# A field path is dotted names with [index] or [key] parts; a key is a data key or an
# annotation name, which vaultsync names in its own messages too, but not a quote.
_FIELD = re.compile(r"[A-Za-z0-9_.\-\[\]/]+")


def invalid_fields(payload: bytes) -> list[str]:
    """`field: words` for each cause of a 422 Status body (at most MAX_CAUSES); [] if none."""
    try:
        status: Any = json.loads(payload)
    except ValueError:
        return []
    details = status.get("details") if isinstance(status, dict) else None
    causes = details.get("causes") if isinstance(details, dict) else None
    if not isinstance(causes, list):
        return []
    out: list[str] = []
    for cause in causes:
        if not isinstance(cause, dict):
            continue
        words = CAUSE_WORDS.get(str(cause.get("reason")), "invalid")
        field = cause.get("field")
        described = f"{field}: {words}" if _safe_field(field) else words
        if described not in out:
            out.append(described)
    return out[:MAX_CAUSES]


def forbidden_cause(payload: bytes) -> str:
    """Who refused a 403, in fixed words: a ResourceQuota, RBAC or else an admission policy.
    The Status message itself is not passed on (an admission webhook may quote the object)."""
    try:
        status: Any = json.loads(payload)
    except ValueError:
        status = None
    message = str(status.get("message") or "") if isinstance(status, dict) else ""
    if "exceeded quota" in message or "status unknown for quota" in message:
        return "a ResourceQuota of the namespace"
    if (
        "denied" in message
    ):  # "admission webhook ... denied the request", "ValidatingAdmissionPolicy ... denied request"
        return "an admission policy"
    return "RBAC"


def _safe_field(field: Any) -> bool:
    return isinstance(field, str) and len(field) <= MAX_FIELD_LENGTH and bool(_FIELD.fullmatch(field))
