"""Keyed fingerprints of Secret data: proof of what was synced without revealing it.

A bare hash of a short password can be brute-forced, so everything the
operator publishes about data (status `dataHMAC`, the Secret's fingerprint
annotation, the workload's restart fingerprint) is an HMAC under a random key
that only the operator holds.

Each namespace gets its own key, derived from the operator's: equal data in two
namespaces gives different fingerprints, so a tenant who can read another
namespace's ExternalSecret status (or a Secret's annotations) cannot learn that
it holds the same password as its own. The derivation is a one-way HMAC, so no
namespace's key reveals the operator's key or another namespace's.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from functools import lru_cache


# Derived on every sync of every ExternalSecret; a few namespaces' keys held beat an HMAC each time.
@lru_cache(maxsize=4096)
def namespace_key(operator_key: bytes, namespace: str) -> bytes:
    """The key of one namespace's fingerprints: HMAC(operator key, "namespace:" + name)."""
    return hmac.new(operator_key, b"namespace:" + namespace.encode(), hashlib.sha256).digest()


def data_hmac(key: bytes, data: Mapping[str, bytes]) -> str:
    """HMAC-SHA256 over the keys and values in a canonical, unambiguous encoding."""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for name in sorted(data):
        encoded = name.encode()
        mac.update(len(encoded).to_bytes(8, "big") + encoded)
        mac.update(len(data[name]).to_bytes(8, "big") + data[name])
    return "hmac-sha256:" + mac.hexdigest()


def combined(fingerprints: Mapping[str, str], key: bytes) -> str:
    """One fingerprint over several Secrets' fingerprints (a workload's restart marker)."""
    payload = {name: value.encode() for name, value in fingerprints.items()}
    return data_hmac(key, payload)[len("hmac-sha256:") :][:16]
