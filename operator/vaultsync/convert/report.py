"""What a conversion could not carry over, field by field, so that nothing is dropped silently.

Three levels: `refused` (the object is not written: converted, it would write a different
Secret or trust differently), `dropped` (the field is left out and the object is written: it
has no vaultsync counterpart and leaving it out does not change the Secret's data), and
`note` (moved, with a difference worth knowing). The command exits 1 when any finding is
refused or dropped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Level = Literal["refused", "dropped", "note"]
BLOCKING: frozenset[Level] = frozenset({"refused", "dropped"})


@dataclass(frozen=True)
class Finding:
    """One field of one source object, and why it did not move (or moved with a difference)."""

    source: str  # "<file>#<document>: <Kind> <namespace>/<name>"
    field: str
    level: Level
    reason: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    def line(self) -> str:
        return f"{self.source}: {self.level}: {self.field}: {self.reason}"
