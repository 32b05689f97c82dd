"""The Azure Key Vault the benchmark reads from: the test emulator, seeded with the M keys.

It is the Key Vault + Entra ID emulator of the provider tests
(tests/providers/servers/azure_emulator.py), which counts every Key Vault request by
operation and the bytes of its answers. Key Vault does not bill per request like AWS; what
matters is its throttle, 4,000 secret operations per 10 s per vault, so the figure next to
the requests is the share of that throttle a cycle's requests use, spread evenly.
"""

from __future__ import annotations

import base64

from bench.operators import CREDS_NAMESPACE, Body, credentials_secret
from bench.remote import Seeded
from tests.providers.servers.azure import AzureEmulator

APP, APP_SECRET = "bench-reader", "bench-reader-client-secret"
HARNESS, HARNESS_SECRET = "bench-harness", "bench-harness-client-secret"
CREDS_SECRET = "bench-azure-creds"
# Key Vault's service limit for secrets: 4,000 transactions per 10 s per vault.
THROTTLE_REQUESTS, THROTTLE_SECONDS = 4000, 10.0
# Operations only the harness makes (its seeding and rotations), never the operator's.
HARNESS_OPERATIONS = frozenset({"set"})
READ_OPERATIONS = frozenset({"get"})


class AzureVault(Seeded):
    name = "azure"

    def __init__(self) -> None:
        self.emulator = AzureEmulator(
            identities={
                APP: {"secret": APP_SECRET, "permissions": ["get", "list"]},
                HARNESS: {"secret": HARNESS_SECRET, "permissions": ["get", "list", "set"]},
            }
        )

    @property
    def url(self) -> str:
        return self.emulator.url

    def start(self) -> None:
        self.emulator.start()

    def stop(self) -> None:
        self.emulator.remove()

    def reset(self) -> None:
        self.emulator.reset_counts()

    def summary(self) -> dict[str, float]:
        counts = self.emulator.counts()
        calls = {op: n for op, n in counts.get("calls", {}).items() if op not in HARNESS_OPERATIONS}
        sizes = {op: n for op, n in counts.get("bytes", {}).items() if op not in HARNESS_OPERATIONS}
        reads = sum(n for op, n in calls.items() if op in READ_OPERATIONS)
        return {
            "provider_requests": sum(calls.values()),
            "provider_bytes": sum(sizes.values()),
            "provider_read_requests": reads,
            "provider_keys_read": reads,  # Key Vault has no batch read: one key per GET
            **{f"{op}_requests": n for op, n in calls.items()},
        }

    def cost(self, requests_per_cycle: float, cycle_seconds: float) -> dict[str, float]:
        per_window = requests_per_cycle * THROTTLE_SECONDS / cycle_seconds
        return {
            "azure_requests_per_10s": per_window,
            "azure_throttle_share": per_window / THROTTLE_REQUESTS,
        }

    def vaultsync_provider(self) -> Body:
        return {
            "azurekv": {
                "vaultUrl": self.url,
                "tenantId": self.emulator.tenant_id,
                "authorityHost": self.url,
                "caBundle": base64.b64encode(self.emulator.ca_pem).decode(),
                "verifyChallengeResource": False,
                "auth": {
                    "clientSecret": {
                        "clientId": APP,
                        "secretRef": {"name": CREDS_SECRET, "key": "secret", "namespace": CREDS_NAMESPACE},
                    }
                },
            }
        }

    def credentials(self) -> list[Body]:
        return [credentials_secret(CREDS_SECRET, {"secret": APP_SECRET})]

    def write(self, key: str, text: str) -> None:
        """As vaultsync names it: each '/' of a key is a '-' in Key Vault."""
        self.emulator.vault(
            HARNESS, HARNESS_SECRET, "PUT", f"/secrets/{key.replace('/', '-')}", {"value": text}
        )
