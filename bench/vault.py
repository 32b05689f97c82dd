"""The HashiCorp Vault the benchmark reads from: an OpenBao dev server seeded with the M keys.

It is the dev server of the provider tests (tests/providers/servers/vault.py) with its file
audit device on, and the operator reads with a token of its own policy, so its requests are
counted from the audit log (one `response` entry per request, by operation) and told apart
from the harness's seeding and rotations, made as root. The audit log holds no answer sizes,
so no bytes are counted here. Vault has no batch read and no listing with versions: its
floor is one request per key per refresh, and its figure is requests, not a bill.
"""

from __future__ import annotations

import json
from typing import Any

from bench.operators import CREDS_NAMESPACE, Body, credentials_secret
from bench.remote import Seeded
from tests.providers.servers.vault import VaultServer, ensure_binary

MOUNT = "secret"
POLICY = "bench-read"
CREDS_SECRET = "bench-vault-token"
READ_OPERATIONS = frozenset({"read"})


class OpenBao(Seeded):
    name = "vault"

    def __init__(self) -> None:
        self.server = VaultServer(binary=ensure_binary(), audit=True)
        self.token = ""
        self._offset = 0

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> None:
        self.server.start()
        rules = f'path "{MOUNT}/data/*" {{ capabilities = ["read"] }}\n'
        rules += f'path "{MOUNT}/metadata/*" {{ capabilities = ["read"] }}\n'
        self.server.request("PUT", f"sys/policies/acl/{POLICY}", {"policy": rules})
        created = self.server.request("POST", "auth/token/create", {"policies": [POLICY], "period": "768h"})
        self.token = created["auth"]["client_token"]

    def stop(self) -> None:
        self.server.close()

    def reset(self) -> None:
        self._offset = self.server.audit_log.stat().st_size if self.server.audit_log.exists() else 0

    def summary(self) -> dict[str, float]:
        calls: dict[str, int] = {}
        for entry in self._entries():
            if entry.get("type") != "response" or POLICY not in (entry.get("auth") or {}).get("policies", []):
                continue
            operation = _operation(entry.get("request") or {})
            calls[operation] = calls.get(operation, 0) + 1
        reads = calls.get("read", 0)
        return {
            "provider_requests": sum(calls.values()),
            "provider_read_requests": reads,
            "provider_keys_read": reads,  # no batch read: one key per request
            **{f"{op}_requests": n for op, n in calls.items()},
        }

    def cost(self, requests_per_cycle: float, cycle_seconds: float) -> dict[str, float]:
        return {"vault_requests_per_second": requests_per_cycle / cycle_seconds}

    def vaultsync_provider(self) -> Body:
        return {
            "vault": {
                "server": self.url,
                "path": MOUNT,
                "version": "v2",
                "auth": {
                    "token": {
                        "secretRef": {"name": CREDS_SECRET, "key": "token", "namespace": CREDS_NAMESPACE}
                    }
                },
            }
        }

    def credentials(self) -> list[Body]:
        return [credentials_secret(CREDS_SECRET, {"token": self.token})]

    def write(self, key: str, text: str) -> None:
        self.server.request("POST", f"{MOUNT}/data/{key}", {"data": json.loads(text)})

    def _entries(self) -> list[dict[str, Any]]:
        if not self.server.audit_log.exists():
            return []
        with self.server.audit_log.open("rb") as log:
            log.seek(self._offset)
            lines = log.read().splitlines()
        return [json.loads(line) for line in lines if line.strip()]


def _operation(request: dict[str, Any]) -> str:
    """`read` (a value), `metadata` (a version check), or the path's first two segments."""
    path = str(request.get("path", ""))
    if path.startswith(f"{MOUNT}/data/"):
        return "read" if request.get("operation") == "read" else "write"
    if path.startswith(f"{MOUNT}/metadata/"):
        return "metadata"
    return "/".join(path.split("/")[:2]).replace("/", "_") or "other"
