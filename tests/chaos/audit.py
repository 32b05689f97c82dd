"""One writer at a time, proved from the API server's audit log rather than the operator's word.

Each replica talks to the API server as its own ServiceAccount, so every audited write
names the replica that made it (`user.username`). Leadership is read from the same log: a
successful write of the Lease by a replica means it holds the Lease from then on (a standby
writes the Lease only to take it; renewals are writes by the holder), so the Lease writes
split the run into terms, each belonging to one replica. A write by a replica received
outside its own terms is a second writer: a violation.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

WRITE_VERBS = frozenset({"create", "update", "patch", "delete"})


@dataclass(frozen=True)
class Write:
    at: datetime  # requestReceivedTimestamp
    user: str
    verb: str
    resource: str
    name: str


@dataclass
class Report:
    writes: Counter[str] = field(default_factory=Counter)  # by replica
    terms: list[tuple[str, datetime]] = field(default_factory=list)  # (holder, from)
    violations: list[str] = field(default_factory=list)


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def read(path: Path) -> list[dict[str, object]]:
    events = []
    for line in path.read_text(errors="replace").splitlines():
        if line.strip():
            events.append(json.loads(line))
    return events


def writes(events: Iterable[Mapping[str, object]], users: Iterable[str]) -> list[Write]:
    """The successful writes the given users made, in the order the API server received them."""
    wanted = set(users)
    found = []
    for event in events:
        user = str((event.get("user") or {}).get("username", ""))  # type: ignore[attr-defined]
        code = int((event.get("responseStatus") or {}).get("code", 0))  # type: ignore[attr-defined]
        if user not in wanted or event.get("verb") not in WRITE_VERBS or not 200 <= code < 300:
            continue
        ref = event.get("objectRef") or {}
        resource = str(ref.get("resource", ""))  # type: ignore[attr-defined]
        if ref.get("subresource"):  # type: ignore[attr-defined]
            resource += "/" + str(ref["subresource"])  # type: ignore[index]
        found.append(
            Write(
                at=_when(str(event["requestReceivedTimestamp"])),
                user=user,
                verb=str(event["verb"]),
                resource=resource,
                name=str(ref.get("name", "")),  # type: ignore[attr-defined]
            )
        )
    return sorted(found, key=lambda w: w.at)


def check_one_writer(found: list[Write], lease: str) -> Report:
    """Split the run into Lease terms and report every write made outside its writer's term."""
    report = Report()
    holder: str | None = None
    for write in found:
        if write.resource == "leases" and write.name == lease:
            if write.user != holder:
                holder = write.user
                report.terms.append((holder, write.at))
            continue
        report.writes[write.user] += 1
        if write.user != holder:
            report.violations.append(
                f"{write.at.isoformat()} {write.user} {write.verb} {write.resource}/{write.name} "
                f"while the Lease was held by {holder}"
            )
    return report
