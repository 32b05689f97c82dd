"""Reading the operator's audit trail back: who read a remote key, and when.

The operator logs every read of a remote key as one JSON line under `vaultsync.audit`
(audit.py): provider reads and values served from its cache alike, with the store, the
keys and the ExternalSecrets that asked. Lines come from files a log pipeline exported
(`--audit-log`) or from the operator Pods' logs (`--operator-namespace`); anything that
is not such a line is skipped. Values never appear in the trail, so neither here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from vaultsync.commands.impact import Store


@dataclass
class Reader:
    external_secret: str  # namespace/name
    before: list[datetime] = field(default_factory=list)  # reads before the cut-off: the old version
    after: list[datetime] = field(default_factory=list)

    @property
    def namespace(self) -> str:
        return self.external_secret.split("/", 1)[0]

    def row(self) -> dict[str, Any]:
        def when(times: list[datetime], pick: Any) -> str:
            return pick(times).isoformat(timespec="milliseconds") if times else ""

        return {
            "externalSecret": self.external_secret,
            "namespace": self.namespace,
            "oldVersionReads": len(self.before),
            "firstRead": when(self.before, min),
            "lastOldRead": when(self.before, max),
            "newVersionReads": len(self.after),
            "firstNewRead": when(self.after, min),
        }


def store_matches(store: Store, logged: str) -> bool:
    """`logged` is a StoreContext as audit.py writes it: "SecretStore ns/name", "ClusterSecretStore name"."""
    kind, _, where = logged.partition(" ")
    name = where.rpartition("/")[2]
    return name == store.name and store.kind in (None, kind)


def key_matches(key: str, logged: Iterable[str]) -> bool:
    return any(item == key or item.startswith(f"{key}@") for item in logged)


def readers(lines: Iterable[str], store: Store, key: str, cutoff: datetime, since: datetime) -> list[Reader]:
    """Who read `key` through `store` since `since`, split at `cutoff` (the rotation)."""
    found: dict[str, Reader] = {}
    for line in lines:
        entry = _entry(line)
        if entry is None:
            continue
        moment, record = entry
        if moment < since or not store_matches(store, str(record.get("store", ""))):
            continue
        if not key_matches(key, record.get("keys") or []):
            continue
        for who in record.get("requestedBy") or []:
            reader = found.setdefault(str(who), Reader(str(who)))
            (reader.before if moment < cutoff else reader.after).append(moment)
    return [found[name] for name in sorted(found)]


def _entry(line: str) -> tuple[datetime, dict[str, Any]] | None:
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        parsed = json.loads(line)
        record = parsed["audit"]
        moment = datetime.fromisoformat(str(parsed["timestamp"]).replace("Z", "+00:00"))
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(record, dict) or moment.tzinfo is None:
        return None
    return moment, record
