"""The credential guard: which Secrets and ServiceAccounts a store may use, and how.

A store's auth block names credentials in the cluster; a tenant writes that block.
This module is the one place that decides whose credentials a store may read (a
SecretStore only its own namespace's) and that no ServiceAccount token the API
server would accept is ever handed to a vault server. Providers receive
credentials only through `StoreCredentials`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any

from vaultsync.errors import CredentialNotFound, InvalidStoreConfig, KubeNotFound
from vaultsync.kube import Kube
from vaultsync.providers.base import SecretKeySelector, ServiceAccountSelector, StoreContext


class StoreCredentials:
    """`Credentials` bound to one store; enforces whose Secrets and ServiceAccounts it may use.

    Every token it requests has the provider's audience and lives ten minutes, and is checked
    with a TokenReview before a provider may send it anywhere: a token the API server would
    accept is never handed to a vault server, which a tenant's store may point at any host.
    The review is the API server's own answer, so it covers every `--api-audiences` value and
    any audience a tenant might guess; comparing against a list of audiences discovered once
    (the mounted token's `aud`, the issuer) could miss one and does not exist out of cluster.
    """

    def __init__(
        self, kube: Kube, store: StoreContext, operator_account: tuple[str, str] | None = None
    ) -> None:
        self._kube = kube
        self._store = store
        self._operator_account = operator_account  # (namespace, name) of the operator's own

    def _namespace(self, requested: str | None, field: str) -> str:
        if self._store.namespace is None:
            if not requested:
                raise InvalidStoreConfig(
                    f"{field}.namespace: required in a ClusterSecretStore, which has no namespace of its own"
                )
            return requested
        if requested and requested != self._store.namespace:
            raise InvalidStoreConfig(
                f"{field}.namespace: a SecretStore may only use credentials from its own "
                f"namespace {self._store.namespace!r}, not {requested!r}"
            )
        return self._store.namespace

    async def secret_value(self, selector: SecretKeySelector, field: str) -> bytes:
        namespace = self._namespace(selector.namespace, field)
        try:
            body = await self._kube.read_secret(namespace, selector.name)
        except KubeNotFound:
            raise CredentialNotFound(
                f"{field}.name: Secret {namespace}/{selector.name} does not exist"
            ) from None
        return secret_key_bytes(body, namespace, selector, field)

    async def service_account_token(
        self, selector: ServiceAccountSelector, field: str, audiences: Sequence[str]
    ) -> str:
        namespace = self._namespace(selector.namespace, field)
        chosen = list(selector.audiences or audiences)
        try:
            return await self._token(namespace, selector.name, chosen, field)
        except KubeNotFound:
            raise CredentialNotFound(
                f"{field}.name: ServiceAccount {namespace}/{selector.name} does not exist"
            ) from None

    async def operator_token(self, field: str, audiences: Sequence[str]) -> str:
        if not self._store.may_use_operator_identity:
            raise InvalidStoreConfig(
                f"{field}: required in a namespaced {self._store}; only a ClusterSecretStore may "
                "use the operator's own ServiceAccount"
            )
        if self._operator_account is None:
            raise CredentialNotFound(
                f"{field}: omitted, so the operator's own ServiceAccount is used, but the operator "
                "was not told its name (--service-account / VAULTSYNC_SERVICE_ACCOUNT)"
            )
        namespace, name = self._operator_account
        try:
            return await self._token(namespace, name, list(audiences), field)
        except KubeNotFound:
            raise CredentialNotFound(
                f"{field}: the operator's ServiceAccount {namespace}/{name} does not exist"
            ) from None

    async def _token(self, namespace: str, name: str, audiences: list[str], field: str) -> str:
        if not audiences or not all(a.strip() for a in audiences):
            # No audience means the API server's own: a token any Kubernetes client accepts.
            raise InvalidStoreConfig(f"{field}.audiences: each audience must be a non-empty string")
        token = await self._kube.request_token(namespace, name, audiences)
        if await self._kube.api_server_accepts(token):
            raise InvalidStoreConfig(
                f"{field}.audiences: the Kubernetes API server accepts tokens for {audiences}, so "
                "a vault server receiving one could act as the ServiceAccount in the cluster; "
                "use an audience only the vault accepts (the default is the provider's own)"
            )
        return token


def secret_key_bytes(
    body: Mapping[str, Any], namespace: str, selector: SecretKeySelector, field: str
) -> bytes:
    """The decoded value of the selected key of a Secret's body; refuses a missing or
    undecodable one naming the field, never passing on garbage as a credential."""
    data = body.get("data") or {}
    if selector.key not in data:
        raise CredentialNotFound(
            f"{field}.key: Secret {namespace}/{selector.name} has no key {selector.key!r}"
        )
    try:
        return base64.b64decode(data[selector.key] or "", validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise InvalidStoreConfig(
            f"{field}.key: key {selector.key!r} of Secret {namespace}/{selector.name} is not base64"
        ) from None
