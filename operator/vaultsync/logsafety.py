"""Logging that does not write credentials or values, even with `--verbose`.

`--verbose` sets the root logger to DEBUG, and at DEBUG the SDKs log what they
send and receive: botocore the signed request (`Authorization`,
`X-Amz-Security-Token`, the body of an AssumeRoleWithWebIdentity carrying the
ServiceAccount token) and every response body (a secret value), urllib3 each
URL, azure-core and the Kubernetes client their request headers. Two lines of
defence:

- the SDK loggers are pinned to WARNING whatever `--verbose` says: their debug
  output is for debugging the SDK, and vaultsync's own lines say which call
  failed and why;
- every handler of the root logger gets `RedactingFilter`, which masks
  credential-shaped text (auth headers, bearer tokens, JWTs, login fields,
  Vault tokens, AWS key ids) in every record that reaches it, for anything that
  logs them anyway (an SDK warning, a traceback).
"""

from __future__ import annotations

import logging
import re

SDK_LOGGERS = (
    "aiohttp",
    "azure",
    "boto3",
    "botocore",
    "hvac",
    "kubernetes",
    "kubernetes_asyncio",
    "msal",
    "requests",
    "s3transfer",
    "urllib3",
)
REDACTED = "<redacted>"

# Headers whose whole value is a credential (unquoted, it runs to the end of the line).
_HEADERS = r"authorization|proxy-authorization|x-amz-security-token|x-vault-token|cookie|set-cookie"
# Fields of login bodies, query strings and dicts whose value is a credential.
_FIELDS = (
    r"x-amz-signature|x-amz-credential|signature|credential|client_token|secret_id|jwt|password"
    r"|token|webidentitytoken|sessiontoken|secretaccesskey|client_secret|client_assertion"
    r"|assertion|refresh_token|access_token|id_token|secretstring|secretbinary"
)
_QUOTED = r"b?'[^']*'|b?\"[^\"]*\""
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9\-._~+/]+=*")
_HEADER = re.compile(rf"""(?i)((?<![.\w-])(?:{_HEADERS})["']?\s*[:=]\s*)(?:{_QUOTED}|[^\r\n]+)""")
_FIELD = re.compile(rf"""(?i)((?<![.\w-])(?:{_FIELDS})["']?\s*[:=]\s*)(?:{_QUOTED}|[^\s&,;}}'"]+)""")
_SHAPES = (
    re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"),  # a JWT
    re.compile(r"\bhv[sbr]\.[A-Za-z0-9_-]{20,}|\bs\.[A-Za-z0-9]{24}\b"),  # a Vault token
    re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),  # an AWS access key id
)


def redact(text: str) -> str:
    """`text` with every credential-shaped part replaced by `<redacted>`."""
    text = _BEARER.sub(rf"\1 {REDACTED}", text)
    text = _HEADER.sub(rf"\1{REDACTED}", text)
    text = _FIELD.sub(rf"\1{REDACTED}", text)
    for shape in _SHAPES:
        text = shape.sub(REDACTED, text)
    return text


_STANDARD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class RedactingFilter(logging.Filter):
    """Rewrites each record's message, traceback and string extras through `redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        for name, value in list(record.__dict__.items()):
            if name not in _STANDARD_ATTRIBUTES and isinstance(value, str):
                setattr(record, name, redact(value))
        return True


def install() -> None:
    """Pins the SDK loggers and filters every handler the root logger has now."""
    for name in SDK_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    root = logging.getLogger()
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
