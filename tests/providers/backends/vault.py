"""Vault (served by a real OpenBao dev server) as a contract-suite backend, KV v2 at `secret/`.

The store reads with a non-root token whose policy allows reading `secret/` only, as a
platform team would hand out. Vault's KV engine stores maps, so `write()` takes a JSON
object and the provider returns that map as JSON.

A dev server keeps everything in memory, so `stop()` then `start()` comes back empty. To
give the contract cases "the same data where the server allows", `start()` re-creates the
policy and the store's token (same token id) and replays every write in order, so each key
ends at the same version number it had.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tests.providers.backends.credentials import StaticCredentials
from tests.providers.servers.vault import VaultServer, start_dev_server
from vaultsync.providers.base import Credentials

LIVE = True

MOUNT = "secret"
POLICY = "vaultsync-contract-read"
READER_TOKEN = "vaultsync-contract-reader"
TOKEN_SECRET = ("vault-token", "token")
WRONG_TOKEN_SECRET = ("vault-token-wrong", "token")


class VaultBackend:
    name = "vault"

    def __init__(self, server: VaultServer) -> None:
        self.server = server
        self._writes: list[tuple[str, dict[str, Any]]] = []
        self._seed()

    def provider_config(self) -> Mapping[str, Any]:
        return self._config(TOKEN_SECRET)

    def bad_credentials_config(self) -> Mapping[str, Any]:
        return self._config(WRONG_TOKEN_SECRET)

    def credentials(self) -> Credentials:
        return StaticCredentials(
            secrets={
                TOKEN_SECRET: READER_TOKEN.encode(),
                WRONG_TOKEN_SECRET: b"hvs.not-a-token-this-vault-issued",
            }
        )

    def write(self, key: str, value: str) -> str:
        data = json.loads(value)
        if not isinstance(data, dict):
            raise ValueError("Vault's KV engine stores maps: write a JSON object")
        self._writes.append((key, data))
        return self._put(key, data)

    def write_tagged(self, key: str, value: str, tags: dict[str, str]) -> str:
        """Tags are KV v2 custom metadata."""
        version = self.write(key, value)
        self.server.request("POST", f"{MOUNT}/metadata/{key}", {"custom_metadata": tags})
        return version

    def delete(self, key: str) -> None:
        """Deletes `key` and every version of it (its metadata): written again, it restarts at 1."""
        self.server.request("DELETE", f"{MOUNT}/metadata/{key}")
        self._writes = [(k, d) for k, d in self._writes if k != key]

    def settle(self) -> None:
        """Nothing to wait for: its version stamps tell apart writes made within a second."""

    def roll_back(self, key: str, version: str) -> None:
        """What `vault kv rollback` does: the old version's data becomes a new version."""
        old = self.server.request("GET", f"{MOUNT}/data/{key}?version={version}")["data"]["data"]
        self.write(key, json.dumps(old))

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.server.start()
        self._seed()
        for key, data in self._writes:
            self._put(key, data)

    def close(self) -> None:
        self.server.close()

    def _config(self, secret: tuple[str, str]) -> dict[str, Any]:
        name, key = secret
        return {
            "server": self.server.url,
            "path": MOUNT,
            "version": "v2",
            "auth": {"token": {"secretRef": {"name": name, "key": key}}},
        }

    def _put(self, key: str, data: dict[str, Any]) -> str:
        response = self.server.request("POST", f"{MOUNT}/data/{key}", {"data": data})
        return str(response["data"]["version"])

    def _seed(self) -> None:
        rules = f'path "{MOUNT}/data/*" {{ capabilities = ["read"] }}\n'
        rules += f'path "{MOUNT}/metadata/*" {{ capabilities = ["read", "list"] }}\n'
        rules += f'path "{MOUNT}/metadata" {{ capabilities = ["list"] }}\n'
        self.server.request("PUT", f"sys/policies/acl/{POLICY}", {"policy": rules})
        self.server.request(
            "POST",
            "auth/token/create-orphan",
            {"id": READER_TOKEN, "policies": [POLICY], "ttl": "24h", "renewable": True},
        )


def start_backend() -> VaultBackend:
    server = start_dev_server()
    try:
        return VaultBackend(server)
    except BaseException:
        server.close()
        raise
