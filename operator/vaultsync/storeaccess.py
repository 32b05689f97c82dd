"""Which namespaces may use a ClusterSecretStore: the access policy, and nothing else.

A ClusterSecretStore serves every namespace its `spec.conditions` admit (by name or
by namespace labels); a namespaced SecretStore serves only its own namespace, which
the storeRef's lookup already guarantees. Namespace labels are read from the API
server and kept for a short while, so a relabelled namespace is honoured soon.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from vaultsync.errors import StoreNotAllowed
from vaultsync.kube import Kube
from vaultsync.models import StoreSpec, parse_store_spec

NAMESPACE_LABELS_TTL = 30.0


class StoreAccess:
    def __init__(self, kube: Kube) -> None:
        self._kube = kube
        self._namespace_labels: dict[str, tuple[float, dict[str, str]]] = {}
        # Each store's parsed spec by (uid, generation): every sync checks access, and
        # parsing the store again on each one was a measurable share of a steady-state cycle.
        self._specs: dict[str, tuple[tuple[Any, Any], StoreSpec]] = {}

    async def check_allowed(
        self, body: Mapping[str, Any], namespace: str, name: str, field: str = "spec.storeRef.name"
    ) -> None:
        """Raises `StoreNotAllowed` unless the ClusterSecretStore `body` admits `namespace`."""
        spec = self._spec(body, name)
        if not spec.conditions:
            return
        labels = await self._labels(namespace)
        if not any(cond.allows(namespace, labels) for cond in spec.conditions):
            raise StoreNotAllowed(
                f"{field}: ClusterSecretStore {name!r} does not allow namespace "
                f"{namespace!r} (see its spec.conditions)"
            )

    def _spec(self, body: Mapping[str, Any], name: str) -> StoreSpec:
        meta = body.get("metadata") or {}
        version = (meta.get("uid"), meta.get("generation"))
        cached = self._specs.get(name)
        if cached is not None and cached[0] == version and version != (None, None):
            return cached[1]
        spec = parse_store_spec(body)
        self._specs[name] = (version, spec)
        return spec

    async def _labels(self, namespace: str) -> dict[str, str]:
        now = time.monotonic()
        cached = self._namespace_labels.get(namespace)
        if cached is not None and now - cached[0] < NAMESPACE_LABELS_TTL:
            return cached[1]
        labels = await self._kube.namespace_labels(namespace)
        self._namespace_labels[namespace] = (now, labels)
        return labels
