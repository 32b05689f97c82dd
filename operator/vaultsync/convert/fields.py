"""A reader over one ESO object that remembers which fields it consumed.

Every converter reads through `Fields`; when it is done, every field it did not read is
reported as refused (an ESO field this converter does not know may change what the Secret
holds), so adding a field to ESO can never make `convert` drop it silently.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from vaultsync.convert.report import Finding, Level

Report = Callable[[str, Level, str], None]


class Fields:
    """The mapping at `path` (e.g. `spec.target`) of one source object."""

    def __init__(self, data: Mapping[str, Any], path: str, report: Report) -> None:
        self._data = data
        self._path = path
        self._report = report
        self._read: set[str] = set()

    @property
    def path(self) -> str:
        return self._path

    @property
    def report_to(self) -> Report:
        return self._report

    def names(self) -> list[str]:
        return list(self._data)

    def at(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key

    def has(self, key: str) -> bool:
        return self._data.get(key) not in (None, "", [], {})

    def get(self, key: str, default: Any = None) -> Any:
        self._read.add(key)
        value = self._data.get(key)
        return default if value is None else value

    def text(self, key: str, default: str = "") -> str:
        value = self.get(key, default)
        return value if isinstance(value, str) else str(value)

    def child(self, key: str) -> Fields | None:
        value = self.get(key)
        if not isinstance(value, Mapping):
            if value not in (None, {}):
                self.report(key, "refused", "expected a mapping")
            return None
        return Fields(value, self.at(key), self._report)

    def children(self, key: str) -> list[Fields]:
        value = self.get(key) or []
        if not isinstance(value, list):
            self.report(key, "refused", "expected a list")
            return []
        out: list[Fields] = []
        for i, item in enumerate(value):
            if isinstance(item, Mapping):
                out.append(Fields(item, f"{self.at(key)}[{i}]", self._report))
            else:
                self._report(f"{self.at(key)}[{i}]", "refused", "expected a mapping")
        return out

    def report(self, key: str, level: Level, reason: str) -> None:
        self._read.add(key)
        self._report(self.at(key), level, reason)

    def refuse(self, key: str, reason: str) -> None:
        self.report(key, "refused", reason)

    def refuse_unless(self, key: str, allowed: tuple[Any, ...], reason: str) -> None:
        """Refuse `key` when it is set to anything but one of `allowed` (ESO's defaults)."""
        value = self.get(key)
        if value is not None and value not in allowed:
            self.refuse(key, f"{value!r}: {reason}")

    def finish(self) -> None:
        for key in self._data:
            if key not in self._read and self._data[key] is not None:
                self._report(self.at(key), "refused", "a field the converter does not know")


def collector(source: str, findings: list[Finding]) -> Report:
    def report(field: str, level: Level, reason: str) -> None:
        findings.append(Finding(source, field, level, reason))

    return report
