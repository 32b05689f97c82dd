"""Endpoint fields hold an origin (scheme, host, optional port) and nothing else.

The SDKs build each request's URL by appending their own path to the configured
endpoint (hvac: `server + "/v1/secret/data/<key>"`). Anything after the origin
therefore lets whoever writes the store choose the real target: `http://10.0.0.5/x#`
turns every Vault read into a GET of `http://10.0.0.5/x`, and a JSON `data` object in
the answer is copied into the tenant's Secret. A `?` does the same with the query,
userinfo (`https://vault.example.com@10.0.0.5`) hides the real host from a reader,
and whitespace or control characters are read differently by different parsers.

No provider needs more than an origin, so the rule is the same for every endpoint
field: `scheme://host[:port]`, one optional trailing `/`. The CRDs hold the same
regular expression in CEL (`origin_rule`); this module is the run-time check for
objects the API server did not check (written before the rule, or a CRD installed
without it).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from vaultsync.constants import ORIGIN_MAX_LENGTH

_HOST = r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)"
_PORT = r"(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?"
HTTP_SCHEMES = ("http", "https")
HTTPS_ONLY = ("https",)
HOST_NAME_LIMIT = 253


def origin_pattern(schemes: tuple[str, ...]) -> str:
    """The regular expression (RE2 and Python alike) an origin field must match."""
    return f"^({'|'.join(schemes)})://{_HOST}{_PORT}/?$"


def origin_rule(schemes: tuple[str, ...]) -> str:
    """The words of a refusal, the same in the CRDs' CEL messages and in `check_origin`."""
    return (
        f"must be an origin, scheme://host or scheme://host:port with scheme {' or '.join(schemes)}, "
        f"without user, path, query, fragment or spaces, at most {ORIGIN_MAX_LENGTH} characters"
    )


def check_origin(value: str, schemes: tuple[str, ...]) -> str:
    """`value` as `scheme://host[:port]` (no trailing `/`), or ValueError naming the rule."""
    if len(value) > ORIGIN_MAX_LENGTH or not re.fullmatch(origin_pattern(schemes), value):
        raise ValueError(origin_rule(schemes))
    parts = urlsplit(value)
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        port = None
        host = ""
    if parts.netloc.startswith("["):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            host = ""
    if not host or len(host) > HOST_NAME_LIMIT or ".." in host or port == 0:
        raise ValueError(origin_rule(schemes))
    return value.rstrip("/")


def origin_of(url: str) -> str:
    """`scheme://host:port` of any URL, the port made explicit, to compare two URLs' origins."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    scheme = parts.scheme.lower()
    port = port or (443 if scheme == "https" else 80)
    host = (parts.hostname or "").lower()
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"
