"""The fake provider as a contract-suite backend: "writing" rebuilds the store's spec.

The fake has no server, so a write appends an entry to the `data` list that
`provider_config()` returns; a client built afterwards sees it, just as the
operator rebuilds a client when a store's spec changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tests.providers.backends.credentials import StaticCredentials
from vaultsync.providers.base import Credentials

LIVE = False


class FakeBackend:
    name = "fake"

    def __init__(self) -> None:
        self._entries: list[dict[str, str]] = []

    def provider_config(self) -> Mapping[str, Any]:
        return {"data": [dict(e) for e in self._entries]}

    def credentials(self) -> Credentials:
        return StaticCredentials()

    def write(self, key: str, value: str) -> str:
        version = str(sum(1 for e in self._entries if e["key"] == key) + 1)
        self._entries.append({"key": key, "value": value, "version": version})
        return version

    def close(self) -> None:
        self._entries.clear()


def start_backend() -> FakeBackend:
    return FakeBackend()
