"""The `fake` provider: values written in the store's own spec.

For local development, demos and tests of everything above the provider
boundary. It is registered and exercised exactly like the real backends, so the
contract suite holds it to the same behaviour.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from vaultsync.errors import SecretNotFound
from vaultsync.providers.base import (
    ConfigModel,
    Credentials,
    FindQuery,
    ListingUnsupported,
    Provider,
    RemoteRef,
    RemoteValue,
    SecretsClient,
    StoreContext,
)


class FakeEntry(ConfigModel):
    key: str = Field(min_length=1, description="The remote key.")
    value: str = Field(description="The value; a JSON object for property and dataFrom.extract.")
    version: str = Field(default="", description="The version id reported for this value.")


class FakeConfig(ConfigModel):
    """Static values in the store's own spec, for development and tests."""

    data: tuple[FakeEntry, ...] = Field(
        description="The remote keys. Entries may repeat a key with different versions; without a "
        "version pin the last one listed is read."
    )


class FakeClient(SecretsClient):
    def __init__(self, config: FakeConfig) -> None:
        self._entries = config.data

    async def get_secret(self, ref: RemoteRef) -> RemoteValue:
        matches = [e for e in self._entries if e.key == ref.key]
        if ref.version:
            matches = [e for e in matches if e.version == ref.version]
        if not matches:
            pinned = f" at version {ref.version!r}" if ref.version else ""
            raise SecretNotFound(f"key {ref.key!r}{pinned} does not exist in the fake store")
        entry = matches[-1]  # without a pin, the last entry listed is the latest
        return RemoteValue(entry.value.encode(), entry.version)

    async def list_keys(self, query: FindQuery, limit: int) -> list[str]:
        """By path prefix; the fake store's entries have no tags."""
        if query.tags:
            raise ListingUnsupported("the fake provider's entries have no tags; find by name or path")
        keys = dict.fromkeys(e.key for e in self._entries if e.key.startswith(query.path))
        return list(keys)[: limit + 1]

    async def validate(self) -> None:
        return None


class FakeProvider(Provider):
    name: ClassVar[str] = "fake"
    config_model: ClassVar[type[ConfigModel]] = FakeConfig

    async def new_client(
        self, config: ConfigModel, store: StoreContext, credentials: Credentials
    ) -> SecretsClient:
        assert isinstance(config, FakeConfig)
        return FakeClient(config)
