"""What the provider contract suite needs from each real server it runs against.

Convention: every module in this package other than `base`/`credentials`
(`aws.py`, `vault.py`, `azure.py`, `fake.py`) is a backend and exposes

    def start_backend() -> Backend

which starts its real server on 127.0.0.1 (binaries/jars cached under
~/.cache/vaultsync, built or installed by the test environment) and returns it
ready for use. `tests/providers/conftest.py` discovers the modules by name and
runs `test_contract.py` against each, once per session. A server that cannot
be started raises from `start_backend()`: the suite fails loudly, never skips.

A module whose backend has no server (the fake: its data lives in the store's
spec) sets `LIVE = False` and returns a plain `Backend`; every other backend is
a `LiveBackend`, and the cases about credentials and a server going away run
against those only.

Backends must use the provider registered under `name` in
`vaultsync.providers.PROVIDERS`, and tests must be able to share one running
server: they use keys of their own (`unique_key()`), never reset the server.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Protocol

from vaultsync.providers.base import Credentials


class Backend(Protocol):
    """A place to write secrets plus the store config that reads them back."""

    name: str  # the provider's registry name, the key under spec.provider

    def provider_config(self) -> Mapping[str, Any]:
        """The `spec.provider.<name>` block that reaches this server with valid credentials."""
        ...

    def credentials(self) -> Credentials:
        """Resolves the credential selectors used by the configs (test-side, no cluster)."""
        ...

    def write(self, key: str, value: str) -> str:
        """Writes a new version of `key` (creating it if needed); returns its version id.

        `value` is a JSON object, which every backend can hold (Vault's KV stores maps);
        a provider may return it re-serialised, so tests compare it parsed.

        Clients built afterwards must see it; a live server's existing clients too.
        """
        ...

    def close(self) -> None:
        """Stops everything the backend started, for good (end of the session)."""
        ...


class LiveBackend(Backend, Protocol):
    """A backend with a real server that can refuse credentials and go away."""

    def bad_credentials_config(self) -> Mapping[str, Any]:
        """The same block with credentials the server refuses."""
        ...

    def stop(self) -> None:
        """Stops the server (to prove fail-static behaviour)."""
        ...

    def start(self) -> None:
        """Starts it again on the same address, accepting the same credentials.

        Data may be lost (in-memory dev servers); tests write again after a restart.
        """
        ...


class DetectingBackend(LiveBackend, Protocol):
    """A backend whose provider detects changes without reading values (`stamps`)."""

    def delete(self, key: str) -> None:
        """Deletes `key` for good, so that it can be created again under the same name."""
        ...

    def roll_back(self, key: str, version: str) -> None:
        """Makes an earlier version (an id `write` returned) the current one again."""
        ...

    def settle(self) -> None:
        """Waits until values written so far can be confirmed by their stamps when read now
        (Azure's times are whole seconds: a value read within the second it was written in
        carries no stamp, so it would be read again rather than confirmed)."""
        ...


class ListingBackend(LiveBackend, Protocol):
    """A backend whose provider lists secrets (`dataFrom.find`)."""

    def write_tagged(self, key: str, value: str, tags: dict[str, str]) -> str:
        """Writes `key` carrying `tags` (AWS tags, Azure tags, Vault KV v2 custom metadata)."""
        ...


def unique_key(prefix: str = "contract") -> str:
    """A key no other test uses, valid in every backend (Azure allows only letters, digits, '-')."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"
