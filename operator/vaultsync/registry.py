"""kopf's registry and per-object memories for vaultsync, both chosen on purpose.

- The registry is made explicitly: kopf's default one probes for the official
  `kubernetes` client and imports it (about 43 MiB resident) to borrow its login;
  vaultsync logs in with kopf's own kubeconfig and ServiceAccount readers
  (`kube.connection_info`), so the client is never loaded.
- kopf keeps a memory record for every object it has seen (a memo copy, an error
  throttler, daemon and index state) until the object is deleted: about 1.5 KiB for
  each ExternalSecret and each Secret. vaultsync has only `on.event` handlers and
  keeps its own state in the scheduler, so each event gets a fresh record that is
  not stored.
"""

from __future__ import annotations

from typing import Any

import kopf
from kopf._core.reactor.inventory import ResourceMemories, ResourceMemory

REGISTRY = kopf.OperatorRegistry()


class UnstoredMemories(ResourceMemories):
    """Per-object memories that live for one event (kopf's private API, pinned by the kopf range)."""

    async def recall(
        self,
        raw_body: Any,
        *,
        memobase: Any = None,
        noticed_by_listing: bool = False,
        ephemeral: bool = False,
    ) -> ResourceMemory:
        return await super().recall(
            raw_body, memobase=memobase, noticed_by_listing=noticed_by_listing, ephemeral=True
        )
