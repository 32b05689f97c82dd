"""The store bodies the watch delivered, kept slim, so resolving a storeRef costs no request.

kopf hands each SecretStore and ClusterSecretStore event to the mirror; a store the
watch has not delivered yet is read once on demand. After a re-list the mirror
equals what the list returned (stores deleted during a watch gap leave it), and the
store-status writer finds here the stores that are not Ready yet.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from vaultsync import constants as c
from vaultsync.conditions import is_ready
from vaultsync.errors import KubeNotFound, StoreNotFound
from vaultsync.kube import Kube, ObjectRef
from vaultsync.models import slim

PLURALS = {
    c.KIND_SECRET_STORE: c.SECRET_STORES,
    c.KIND_CLUSTER_SECRET_STORE: c.CLUSTER_SECRET_STORES,
}

log = logging.getLogger(__name__)

StoreKey = tuple[str, str | None, str]  # (kind, namespace, name)


class StoreMirror:
    def __init__(self, kube: Kube, on_deleted: Callable[[StoreKey], None] | None = None) -> None:
        self._kube = kube
        self._on_deleted = on_deleted
        self._bodies: dict[StoreKey, dict[str, Any]] = {}

    def observe(self, kind: str, body: Mapping[str, Any], deleted: bool) -> None:
        meta = body["metadata"]
        key = (kind, meta.get("namespace"), meta["name"])
        if deleted:
            self._bodies.pop(key, None)
            if self._on_deleted is not None:
                self._on_deleted(key)
        else:
            self._bodies[key] = slim(body)

    async def relisted(self, kind: str, seen: set[Hashable]) -> None:
        """A listing of `kind` is over: stores it lacked leave the mirror (deleted during a
        watch gap). One still there is read again on its next use (`body`)."""
        for known, namespace, name in list(self._bodies):
            if known == kind and (namespace, name) not in seen:
                log.info("store missing from a listing: dropped", extra={"store": f"{kind}/{name}"})
                self.observe(kind, {"metadata": {"namespace": namespace, "name": name}}, deleted=True)

    def not_ready(self) -> list[tuple[str, dict[str, Any]]]:
        """Known stores whose Ready condition is not True."""
        return [
            (kind, body) for (kind, _, _), body in self._bodies.items() if not is_ready(body.get("status"))
        ]

    def object_ref(self, store: str) -> ObjectRef | None:
        """The store (`kind/namespace/name`) as an Event's subject, if it is known."""
        kind, namespace, name = store.split("/", 2)
        body = self._bodies.get((kind, namespace or None, name))
        if body is None:
            return None
        return ObjectRef(c.API_VERSION, kind, namespace or None, name, body["metadata"].get("uid", ""))

    def keys(self) -> list[StoreKey]:
        return list(self._bodies)

    async def body(
        self, kind: str, namespace: str | None, name: str, field: str = "spec.storeRef.name"
    ) -> dict[str, Any]:
        cached = self._bodies.get((kind, namespace, name))
        if cached is not None:
            return cached
        try:
            body = await self._kube.read_custom(PLURALS[kind], namespace, name)
        except KubeNotFound:
            where = f" in namespace {namespace!r}" if namespace else ""
            raise StoreNotFound(f"{field}: {kind} {name!r} not found{where}") from None
        self._bodies[(kind, namespace, name)] = slim(body)
        return self._bodies[(kind, namespace, name)]
