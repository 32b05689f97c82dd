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
import binascii
import ipaddress
import logging
import time
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from vaultsync import constants as c
from vaultsync.callbudget import Budgets
from vaultsync.errors import (
    AuthenticationError,
    CredentialNotFound,
    InvalidSpec,
    InvalidStoreConfig,
    KubeError,
    KubeNotFound,
    ProviderError,
    StoreLoginRefused,
    StoreNotAllowed,
    StoreNotFound,
    StoreNotReady,
    VaultsyncError,
)
from vaultsync.kube import Kube, ObjectRef
from vaultsync.models import StoreRef, parse_store_spec, slim
from vaultsync.providers import PROVIDERS
from vaultsync.providers.base import (
    SecretKeySelector,
    SecretsClient,
    ServiceAccountSelector,
    StoreContext,
)

NAMESPACE_LABELS_TTL = 30.0
# After a store's login is refused, no new login for this long, doubling up to the maximum.
LOGIN_BACKOFF_INITIAL = 5.0
LOGIN_BACKOFF_MAX = 60.0
PLURALS = {
    c.KIND_SECRET_STORE: c.SECRET_STORES,
    c.KIND_CLUSTER_SECRET_STORE: c.CLUSTER_SECRET_STORES,
}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResolvedStore:
    """A usable store: its identity, its provider and an authenticated client."""

    context: StoreContext
    provider: str
    client: SecretsClient
    cache_key: str


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


@dataclass(frozen=True)
class _Refused:
    """A store generation whose login was refused: no new login before `retry_at` (monotonic)."""

    cache_key: str
    retry_at: float
    delay: float
    message: str


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


class Stores:
    """Store bodies seen on the watch, and one client per store generation.

    A client is shared by every ExternalSecret that uses its store, so only a refused
    login drops it (`invalidate`); an error about one key never does. After a refused
    login the store is not logged in again before a backoff has passed, however many
    ExternalSecrets ask in the meantime.
    """

    def __init__(
        self,
        kube: Kube,
        operator_account: tuple[str, str] | None = None,
        denied_egress: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (),
        *,
        enable_fake_provider: bool = False,
        budgets: Budgets | None = None,
    ) -> None:
        self._kube = kube
        self._budgets = budgets or Budgets(None)
        self._operator_account = operator_account
        self._denied_egress = denied_egress  # applies to namespaced stores only
        self._enable_fake = enable_fake_provider
        self._bodies: dict[tuple[str, str | None, str], dict[str, Any]] = {}
        self._clients: dict[str, ResolvedStore] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._refused: dict[str, _Refused] = {}  # by store (kind/namespace/name), one generation each
        self._namespace_labels: dict[str, tuple[float, dict[str, str]]] = {}

    def observe(self, kind: str, body: Mapping[str, Any], deleted: bool) -> None:
        meta = body["metadata"]
        key = (kind, meta.get("namespace"), meta["name"])
        if deleted:
            self._bodies.pop(key, None)
            self._refused.pop(f"{kind}/{meta.get('namespace') or ''}/{meta['name']}", None)
        else:
            self._bodies[key] = slim(body)

    async def relisted(self, kind: str, seen: set[Hashable]) -> None:
        """A listing of `kind` is over: stores it lacked leave the mirror (deleted during a
        watch gap). One still there is read again on its next use (`_body`)."""
        for known, namespace, name in list(self._bodies):
            if known == kind and (namespace, name) not in seen:
                log.info("store missing from a listing: dropped", extra={"store": f"{kind}/{name}"})
                self.observe(kind, {"metadata": {"namespace": namespace, "name": name}}, deleted=True)

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
        namespace = meta.get("namespace")
        denied = self._denied_egress if namespace else ()
        context = StoreContext(kind=kind, name=meta["name"], namespace=namespace, denied_egress=denied)
        identity = f"{meta.get('uid')}/{meta.get('generation')}"
        cache_key = f"{kind}/{context.namespace or ''}/{context.name}@{identity}"
        resolved = self._clients.get(cache_key)
        if resolved is not None:
            return resolved
        lock = self._locks.setdefault(cache_key, asyncio.Lock())
        async with lock:
            resolved = self._clients.get(cache_key)
            if resolved is None:
                refused = self._refused.get(_store_of(cache_key))
                if refused and refused.cache_key == cache_key and time.monotonic() < refused.retry_at:
                    raise StoreNotReady(refused.message)
                try:
                    resolved = await self._new_client(context, body, cache_key)
                except StoreLoginRefused as exc:
                    self._back_off(cache_key, exc.message)
                    raise
                self._refused.pop(_store_of(cache_key), None)
                for old in [k for k in self._clients if _store_of(k) == _store_of(cache_key)]:
                    await self._clients.pop(old).client.close()
                self._clients[cache_key] = resolved
        return resolved

    async def invalidate(self, resolved: ResolvedStore) -> None:
        """Drops a client whose login the vault refused; the next use logs in again, after a
        backoff. Only for a store-level refusal: a key's denial is `PermissionDenied`."""
        if self._clients.get(resolved.cache_key) is resolved:
            del self._clients[resolved.cache_key]
            # Callers waiting out the backoff see the store's state, not the message of the
            # ExternalSecret (of whichever namespace) that met the refusal.
            message = (
                f"{resolved.context}: the vault refused the store's credentials; logging in again shortly"
            )
            self._back_off(resolved.cache_key, message)
            await resolved.client.close()

    def _back_off(self, cache_key: str, message: str) -> None:
        previous = self._refused.get(_store_of(cache_key))
        if previous is None or previous.cache_key != cache_key:  # a new generation starts afresh
            delay = LOGIN_BACKOFF_INITIAL
        else:
            delay = min(previous.delay * 2, LOGIN_BACKOFF_MAX)
        self._refused[_store_of(cache_key)] = _Refused(cache_key, time.monotonic() + delay, delay, message)

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
            credentials = StoreCredentials(self._kube, context, self._operator_account)
            client = await provider.new_client(config, context, credentials)
        except AuthenticationError as exc:
            raise StoreLoginRefused(_not_ready(context, exc).message) from None
        except (ProviderError, KubeError):
            raise  # transient: the ExternalSecret reports ProviderError and retries
        except VaultsyncError as exc:
            raise _not_ready(context, exc) from None
        except Exception as exc:  # an SDK error the provider did not convert: never echo its text
            raise StoreNotReady(
                f"{context} is not ready: the {name} provider failed ({type(exc).__name__})"
            ) from None
        client.budget = self._budgets.for_store(_store_of(cache_key), spec.calls_per_minute)
        return ResolvedStore(context=context, provider=name, client=client, cache_key=cache_key)

    def object_ref(self, store: str) -> ObjectRef | None:
        """The store (kind/namespace/name) as an Event's subject, if it is known."""
        kind, namespace, name = store.split("/", 2)
        body = self._bodies.get((kind, namespace or None, name))
        if body is None:
            return None
        return ObjectRef(c.API_VERSION, kind, namespace or None, name, body["metadata"].get("uid", ""))


def _store_of(cache_key: str) -> str:
    """`kind/namespace/name` of a client's cache key (`...@uid/generation`)."""
    return cache_key.split("@")[0]


def _not_ready(context: StoreContext, exc: VaultsyncError) -> StoreNotReady:
    if str(context) in exc.message:
        return StoreNotReady(exc.message)
    return StoreNotReady(f"{context} is not ready: {exc.message}")


async def store_status(
    stores: Stores, kind: str, body: Mapping[str, Any], timeout: float = c.STORE_STATUS_TIMEOUT_SECONDS
) -> dict[str, Any]:
    """The store's status: `Ready` after a real round trip to its vault within `timeout`, else
    why not. Bounded, so housekeeping and the store's watch never wait on a hanging vault."""
    try:
        async with asyncio.timeout(timeout):
            resolved = await stores.client_for(kind, body)
            try:
                await resolved.client.validate()
            except AuthenticationError:
                await stores.invalidate(resolved)
                raise
        ready, reason, message = "True", c.Reason.VALID, f"{resolved.context} is ready"
    except TimeoutError:
        meta = body["metadata"]
        where = f"{meta['namespace']}/" if meta.get("namespace") else ""
        ready, reason = "False", c.Reason.PROVIDER_ERROR
        message = f"{kind} {where}{meta['name']} did not answer within {timeout:g} s"
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
