"""SecretStores and ClusterSecretStores: who may use them, and an authenticated client for each.

Owns the security rules around stores: a namespaced store serves only its own
namespace and reads credentials only from it; a ClusterSecretStore serves the
namespaces its `conditions` allow. Clients are created once per store
generation (so tokens are reused and renewed, not re-created per read) and
dropped when the store changes or its credentials are refused.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from vaultsync import constants as c
from vaultsync.errors import (
    AuthenticationError,
    CredentialNotFound,
    InvalidSpec,
    InvalidStoreConfig,
    KubeError,
    KubeNotFound,
    ProviderError,
    StoreNotAllowed,
    StoreNotFound,
    StoreNotReady,
    VaultsyncError,
)
from vaultsync.kube import Kube
from vaultsync.models import StoreRef, parse_store_spec, slim
from vaultsync.providers import PROVIDERS
from vaultsync.providers.base import (
    SecretKeySelector,
    SecretsClient,
    ServiceAccountSelector,
    StoreContext,
)

NAMESPACE_LABELS_TTL = 30.0
PLURALS = {
    c.KIND_SECRET_STORE: c.SECRET_STORES,
    c.KIND_CLUSTER_SECRET_STORE: c.CLUSTER_SECRET_STORES,
}


@dataclass(frozen=True)
class ResolvedStore:
    """A usable store: its identity, its provider and an authenticated client."""

    context: StoreContext
    provider: str
    client: SecretsClient
    cache_key: str


class StoreCredentials:
    """`Credentials` bound to one store; enforces whose Secrets and ServiceAccounts it may use."""

    def __init__(self, kube: Kube, store: StoreContext) -> None:
        self._kube = kube
        self._store = store

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
        data = body.get("data") or {}
        if selector.key not in data:
            raise CredentialNotFound(
                f"{field}.key: Secret {namespace}/{selector.name} has no key {selector.key!r}"
            )
        return base64.b64decode(data[selector.key])

    async def service_account_token(
        self, selector: ServiceAccountSelector, field: str, audiences: Sequence[str]
    ) -> str:
        namespace = self._namespace(selector.namespace, field)
        try:
            return await self._kube.request_token(
                namespace, selector.name, selector.audiences or list(audiences)
            )
        except KubeNotFound:
            raise CredentialNotFound(
                f"{field}.name: ServiceAccount {namespace}/{selector.name} does not exist"
            ) from None


class Stores:
    """Store bodies seen on the watch, and one client per store generation."""

    def __init__(self, kube: Kube, *, enable_fake_provider: bool = False) -> None:
        self._kube = kube
        self._enable_fake = enable_fake_provider
        self._bodies: dict[tuple[str, str | None, str], dict[str, Any]] = {}
        self._clients: dict[str, ResolvedStore] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._namespace_labels: dict[str, tuple[float, dict[str, str]]] = {}

    def observe(self, kind: str, body: Mapping[str, Any], deleted: bool) -> None:
        meta = body["metadata"]
        key = (kind, meta.get("namespace"), meta["name"])
        if deleted:
            self._bodies.pop(key, None)
        else:
            self._bodies[key] = slim(body)

    def not_ready(self) -> list[tuple[str, dict[str, Any]]]:
        """Known stores whose Ready condition is not True."""
        out = []
        for (kind, _, _), body in self._bodies.items():
            conditions = (body.get("status") or {}).get("conditions") or []
            if not any(x.get("type") == c.CONDITION_READY and x.get("status") == "True" for x in conditions):
                out.append((kind, body))
        return out

    async def for_namespace(self, namespace: str, ref: StoreRef) -> ResolvedStore:
        """The store an ExternalSecret in `namespace` names, if it may use it."""
        store_ns = namespace if ref.kind == c.KIND_SECRET_STORE else None
        body = await self._body(ref.kind, store_ns, ref.name)
        if ref.kind == c.KIND_CLUSTER_SECRET_STORE:
            await self._check_allowed(body, namespace, ref.name)
        return await self.client_for(ref.kind, body)

    async def client_for(self, kind: str, body: Mapping[str, Any]) -> ResolvedStore:
        meta = body["metadata"]
        context = StoreContext(kind=kind, name=meta["name"], namespace=meta.get("namespace"))
        identity = f"{meta.get('uid')}/{meta.get('generation')}"
        cache_key = f"{kind}/{context.namespace or ''}/{context.name}@{identity}"
        resolved = self._clients.get(cache_key)
        if resolved is not None:
            return resolved
        lock = self._locks.setdefault(cache_key, asyncio.Lock())
        async with lock:
            resolved = self._clients.get(cache_key)
            if resolved is None:
                resolved = await self._new_client(context, body, cache_key)
                for old in [k for k in self._clients if k.split("@")[0] == cache_key.split("@")[0]]:
                    await self._clients.pop(old).client.close()
                self._clients[cache_key] = resolved
        return resolved

    async def invalidate(self, resolved: ResolvedStore) -> None:
        """Drops a client whose credentials were refused, so the next use logs in again."""
        if self._clients.get(resolved.cache_key) is resolved:
            del self._clients[resolved.cache_key]
            await resolved.client.close()

    async def close(self) -> None:
        for resolved in self._clients.values():
            await resolved.client.close()
        self._clients.clear()

    async def _body(self, kind: str, namespace: str | None, name: str) -> dict[str, Any]:
        cached = self._bodies.get((kind, namespace, name))
        if cached is not None:
            return cached
        try:
            body = await self._kube.read_custom(PLURALS[kind], namespace, name)
        except KubeNotFound:
            where = f" in namespace {namespace!r}" if namespace else ""
            raise StoreNotFound(f"spec.storeRef.name: {kind} {name!r} not found{where}") from None
        self._bodies[(kind, namespace, name)] = slim(body)
        return self._bodies[(kind, namespace, name)]

    async def _check_allowed(self, body: Mapping[str, Any], namespace: str, name: str) -> None:
        spec = parse_store_spec(body)
        if not spec.conditions:
            return
        labels = await self._labels(namespace)
        if not any(cond.allows(namespace, labels) for cond in spec.conditions):
            raise StoreNotAllowed(
                f"spec.storeRef.name: ClusterSecretStore {name!r} does not allow namespace "
                f"{namespace!r} (see its spec.conditions)"
            )

    async def _labels(self, namespace: str) -> dict[str, str]:
        now = time.monotonic()
        cached = self._namespace_labels.get(namespace)
        if cached is not None and now - cached[0] < NAMESPACE_LABELS_TTL:
            return cached[1]
        labels = await self._kube.namespace_labels(namespace)
        self._namespace_labels[namespace] = (now, labels)
        return labels

    async def _new_client(
        self, context: StoreContext, body: Mapping[str, Any], cache_key: str
    ) -> ResolvedStore:
        try:
            spec = parse_store_spec(body)
        except InvalidSpec as exc:
            raise StoreNotReady(f"{context} is invalid: {exc.message}") from None
        if len(spec.provider) != 1:
            raise StoreNotReady(f"{context} is invalid: spec.provider must name exactly one provider")
        ((name, raw),) = spec.provider.items()
        if name == c.FAKE_PROVIDER and not self._enable_fake:
            raise StoreNotReady(
                f"{context} is invalid: spec.provider.{name}: the fake provider is disabled; "
                "it serves values written in the store itself, for development and tests only "
                "(start the operator with --enable-fake-provider, "
                "VAULTSYNC_ENABLE_FAKE_PROVIDER=true, to allow it)"
            )
        provider = PROVIDERS.get(name)
        if provider is None:
            known = ", ".join(sorted(PROVIDERS))
            raise StoreNotReady(
                f"{context} is invalid: spec.provider.{name} is not a known provider ({known})"
            )
        try:
            config = provider.parse_config(raw)
            client = await provider.new_client(config, context, StoreCredentials(self._kube, context))
        except AuthenticationError as exc:
            raise _not_ready(context, exc) from None
        except (ProviderError, KubeError):
            raise  # transient: the ExternalSecret reports ProviderError and retries
        except VaultsyncError as exc:
            raise _not_ready(context, exc) from None
        except Exception as exc:  # an SDK error the provider did not convert: never echo its text
            raise StoreNotReady(
                f"{context} is not ready: the {name} provider failed ({type(exc).__name__})"
            ) from None
        return ResolvedStore(context=context, provider=name, client=client, cache_key=cache_key)


def _not_ready(context: StoreContext, exc: VaultsyncError) -> StoreNotReady:
    if str(context) in exc.message:
        return StoreNotReady(exc.message)
    return StoreNotReady(f"{context} is not ready: {exc.message}")


async def store_status(stores: Stores, kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The store's status: `Ready` after a real round trip to its vault, else why not."""
    try:
        resolved = await stores.client_for(kind, body)
        try:
            await resolved.client.validate()
        except AuthenticationError:
            await stores.invalidate(resolved)
            raise
        ready, reason, message = "True", c.Reason.VALID, f"{resolved.context} is ready"
    except StoreNotReady as exc:
        ready, reason, message = "False", c.Reason.INVALID_CONFIG, exc.message
    except AuthenticationError as exc:
        ready, reason, message = (
            "False",
            c.Reason.INVALID_CONFIG,
            f"credentials refused: {exc.message}",
        )
    except VaultsyncError as exc:
        ready, reason, message = "False", c.Reason.PROVIDER_ERROR, exc.message
    except Exception as exc:  # the same guard as in client creation, for validate()
        ready, reason, message = "False", c.Reason.PROVIDER_ERROR, f"validation failed ({type(exc).__name__})"
    old = next(
        (x for x in (body.get("status") or {}).get("conditions") or [] if x.get("type") == c.CONDITION_READY),
        None,
    )
    transition = (
        old["lastTransitionTime"]
        if old and old.get("status") == ready and old.get("lastTransitionTime")
        else datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    condition = {
        "type": c.CONDITION_READY,
        "status": ready,
        "reason": reason.value,
        "message": message,
        "lastTransitionTime": transition,
    }
    provider = ",".join(sorted((body.get("spec") or {}).get("provider") or {}))
    return {
        "observedGeneration": body["metadata"].get("generation"),
        "provider": provider,
        "conditions": [condition],
    }
