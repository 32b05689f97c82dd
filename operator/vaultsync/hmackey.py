"""The operator's data-HMAC key: made once, shared by every replica, never overwritten.

Fingerprints in every managed Secret and status are keyed with it, so losing or
changing it would look like a rotation everywhere. It lives in a Secret of the
operator's namespace; this module creates it race-safe at start and puts it back
if it is deleted while the operator runs. It only composes `Kube`'s Secret calls.
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets

from vaultsync import constants as c
from vaultsync.errors import HmacKeyUnusable, KubeConflict, KubeNotFound
from vaultsync.kube import Body, Kube

log = logging.getLogger(__name__)

HMAC_KEY_MIN_BYTES = 32


async def ensure_hmac_key(kube: Kube, namespace: str) -> bytes:
    """The operator's data-HMAC key, random, kept in a Secret of its own namespace.

    Never overwritten: replicas starting together race on the create, one wins and the
    others get 409 and read the winner's key (so does a resent create whose first
    attempt got through). A key Secret that cannot be used stops the start.
    """
    try:
        body = await kube.read_secret(namespace, c.HMAC_KEY_SECRET)
    except KubeNotFound:
        return await _create(kube, namespace, secrets.token_bytes(HMAC_KEY_MIN_BYTES))
    return _key_of(namespace, body)


async def keep_hmac_key(kube: Kube, namespace: str, key: bytes) -> bytes:
    """A running operator puts its key back if the Secret was deleted, so nothing that was
    fingerprinted with it changes. Returns the stored key (another replica's, if it
    differs, which is logged: that replica fingerprints with another key)."""
    try:
        stored = _key_of(namespace, await kube.read_secret(namespace, c.HMAC_KEY_SECRET))
    except KubeNotFound:
        stored = await _create(kube, namespace, key)
        log.warning("HMAC key Secret was missing and is restored", extra={"secret": c.HMAC_KEY_SECRET})
    if stored != key:
        log.error(
            "HMAC key Secret holds a key this process does not use; restart it to adopt the stored key",
            extra={"secret": c.HMAC_KEY_SECRET},
        )
    return stored


async def _create(kube: Kube, namespace: str, key: bytes) -> bytes:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": c.HMAC_KEY_SECRET,
            "labels": {"app.kubernetes.io/part-of": "vaultsync"},
        },
        "type": "Opaque",
        "data": {c.HMAC_KEY_FIELD: base64.b64encode(key).decode()},
    }
    try:
        body = await kube.create_secret(namespace, secret)
    except KubeConflict:  # another replica created it first: its key wins
        body = await kube.read_secret(namespace, c.HMAC_KEY_SECRET)
    return _key_of(namespace, body)


def _key_of(namespace: str, body: Body) -> bytes:
    encoded = (body.get("data") or {}).get(c.HMAC_KEY_FIELD) or ""
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) < HMAC_KEY_MIN_BYTES:
        raise HmacKeyUnusable(
            f"Secret {namespace}/{c.HMAC_KEY_SECRET}: data.{c.HMAC_KEY_FIELD}: must hold at least "
            f"{HMAC_KEY_MIN_BYTES} random bytes in base64; vaultsync never overwrites it: delete "
            "the Secret and a new key is made"
        )
    return key
