"""SecretStores and ClusterSecretStores, as the reconciler and the handlers see them.

One entry point composing the store services, each with one job: the mirror of
store bodies (`storemirror`), who may use a store (`storeaccess`), one client per
store generation with its login backoff (`storeclients`), and through it the
credential guard (`credentials`). The security rules in short: a namespaced store
serves only its own namespace and reads credentials only from it; a
ClusterSecretStore serves the namespaces its `conditions` allow.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from vaultsync import constants as c
from vaultsync.kube import Kube
from vaultsync.models import StoreRef
from vaultsync.storeaccess import StoreAccess
from vaultsync.storeclients import ResolvedStore, StoreClients
from vaultsync.storemirror import StoreKey, StoreMirror


class Stores:
    def __init__(self, kube: Kube, clients: StoreClients | None = None) -> None:
        self.clients = clients or StoreClients(kube)
        self.mirror = StoreMirror(kube, on_deleted=self._deleted)
        self._access = StoreAccess(kube)

    def _deleted(self, key: StoreKey) -> None:
        self.clients.forget(*key)

    def observe(self, kind: str, body: Mapping[str, Any], deleted: bool) -> None:
        self.mirror.observe(kind, body, deleted)

    async def relisted(self, kind: str, seen: set[Hashable]) -> None:
        await self.mirror.relisted(kind, seen)

    def not_ready(self) -> list[tuple[str, dict[str, Any]]]:
        return self.mirror.not_ready()

    async def for_namespace(
        self, namespace: str, ref: StoreRef, field: str = "spec.storeRef.name"
    ) -> ResolvedStore:
        """The store an ExternalSecret in `namespace` names, if it may use it; a refusal
        names `field`, the spec field that named the store."""
        store_ns = namespace if ref.kind == c.KIND_SECRET_STORE else None
        body = await self.mirror.body(ref.kind, store_ns, ref.name, field)
        if ref.kind == c.KIND_CLUSTER_SECRET_STORE:
            await self._access.check_allowed(body, namespace, ref.name, field)
        return await self.clients.client_for(ref.kind, body)

    async def client_for(self, kind: str, body: Mapping[str, Any]) -> ResolvedStore:
        return await self.clients.client_for(kind, body)

    async def invalidate(self, resolved: ResolvedStore) -> None:
        await self.clients.invalidate(resolved)

    async def close(self) -> None:
        await self.clients.close()
