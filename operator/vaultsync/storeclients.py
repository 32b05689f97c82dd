"""One authenticated provider client per store generation, shared, with a login backoff.

Clients are created once per store generation (so tokens are reused and renewed,
not re-created per read), shared by every ExternalSecret that uses the store, and
dropped when the store changes or the vault refuses its login. After a refused
login the store is not logged in again before a backoff has passed, however many
ExternalSecrets ask in the meantime. SDK errors a provider did not convert never
leave this module with their text.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vaultsync import constants as c
from vaultsync.callbudget import Budgets
from vaultsync.credentials import StoreCredentials
from vaultsync.errors import (
    AuthenticationError,
    InvalidSpec,
    KubeError,
    ProviderError,
    StoreLoginRefused,
    StoreNotReady,
    VaultsyncError,
)
from vaultsync.kube import Kube
from vaultsync.models import parse_store_spec
from vaultsync.providers import PROVIDERS
from vaultsync.providers.base import SecretsClient, StoreContext

# After a store's login is refused, no new login for this long, doubling up to the maximum.
LOGIN_BACKOFF_INITIAL = 5.0
LOGIN_BACKOFF_MAX = 60.0


@dataclass(frozen=True)
class ResolvedStore:
    """A usable store: its identity, its provider and an authenticated client."""

    context: StoreContext
    provider: str
    client: SecretsClient
    cache_key: str


@dataclass(frozen=True)
class _Refused:
    """A store generation whose login was refused: no new login before `retry_at` (monotonic)."""

    cache_key: str
    retry_at: float
    delay: float
    message: str


class StoreClients:
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
        self._clients: dict[str, ResolvedStore] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._refused: dict[str, _Refused] = {}  # by store (kind/namespace/name), one generation each

    def forget(self, kind: str, namespace: str | None, name: str) -> None:
        """A deleted store: its backoff goes (a store made again under its name starts afresh)."""
        self._refused.pop(f"{kind}/{namespace or ''}/{name}", None)

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
            raise  # transient: the ExternalSecret reports it and retries
        except VaultsyncError as exc:
            raise _not_ready(context, exc) from None
        except Exception as exc:  # an SDK error the provider did not convert: never echo its text
            raise StoreNotReady(
                f"{context} is not ready: the {name} provider failed ({type(exc).__name__})"
            ) from None
        client.budget = self._budgets.for_store(_store_of(cache_key), spec.calls_per_minute)
        return ResolvedStore(context=context, provider=name, client=client, cache_key=cache_key)


def _store_of(cache_key: str) -> str:
    """`kind/namespace/name` of a client's cache key (`...@uid/generation`)."""
    return cache_key.split("@")[0]


def _not_ready(context: StoreContext, exc: VaultsyncError) -> StoreNotReady:
    if str(context) in exc.message:
        return StoreNotReady(exc.message)
    return StoreNotReady(f"{context} is not ready: {exc.message}")
