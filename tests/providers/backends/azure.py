"""The Azure Key Vault backend: the local Key Vault + Entra ID emulator, reached over verified TLS.

The directory is seeded with one app per case the tests need: a reader (client secret, Get
permission), a writer the backend itself uses, an app with no vault permission (403), a
workload-identity app federated with the ServiceAccount `app` of the contract namespace, and a
user-assigned managed identity. ServiceAccount tokens are RS256 JWTs signed by a key made here,
standing in for the cluster's issuer; the emulator trusts that key, as Entra ID trusts an AKS
cluster's OIDC issuer, so an assertion for the wrong ServiceAccount is really refused.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.providers.backends.credentials import StaticCredentials
from tests.providers.servers.azure import AzureEmulator
from vaultsync.providers.azure import TOKEN_EXCHANGE_AUDIENCE, secret_name

NAMESPACE = "contract"  # the namespace of the contract suite's store
ISSUER = "https://oidc.vaultsync-test.invalid/cluster"
READER, WRITER, NO_ACCESS = "vaultsync-reader", "vaultsync-writer", "vaultsync-no-access"
GET_ONLY = "vaultsync-get-only"  # an access policy with Get and without List
WORKLOAD, MANAGED = "vaultsync-workload", "vaultsync-managed"
SERVICE_ACCOUNT, OTHER_SERVICE_ACCOUNT = "app", "other-app"
WRITER_PERMISSIONS = ("get", "list", "set", "delete", "purge", "backup", "restore")
# Distinctive, so a test can prove none of them reaches a message.
READER_SECRET = f"reader-client-secret-{secrets.token_hex(8)}"
WRITER_SECRET = f"writer-client-secret-{secrets.token_hex(8)}"
NO_ACCESS_SECRET = f"no-access-client-secret-{secrets.token_hex(8)}"
GET_ONLY_SECRET = f"get-only-client-secret-{secrets.token_hex(8)}"
WRONG_SECRET = f"wrong-client-secret-{secrets.token_hex(8)}"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _service_account_token(key: rsa.RSAPrivateKey, name: str) -> str:
    """A token shaped like the API server's TokenRequest answer for `name`."""
    header = _b64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    claims = {
        "iss": ISSUER,
        "sub": f"system:serviceaccount:{NAMESPACE}:{name}",
        "aud": [TOKEN_EXCHANGE_AUDIENCE],
        "iat": int(time.time()),
        "exp": int(time.time()) + 24 * 3600,
    }
    payload = _b64url(json.dumps(claims).encode())
    signature = key.sign(f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{payload}.{_b64url(signature)}"


def _client_secret(client_id: str, secret_name_: str) -> dict[str, Any]:
    return {
        "clientSecret": {
            "clientId": client_id,
            "secretRef": {"name": secret_name_, "key": "client-secret"},
        }
    }


class AzureBackend:
    name = "azurekv"

    def __init__(self) -> None:
        self._issuer_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public_pem = self._issuer_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.emulator = AzureEmulator(
            identities={
                READER: {"secret": READER_SECRET, "permissions": ["get", "list"]},
                GET_ONLY: {"secret": GET_ONLY_SECRET, "permissions": ["get"]},
                WRITER: {"secret": WRITER_SECRET, "permissions": [*WRITER_PERMISSIONS]},
                NO_ACCESS: {"secret": NO_ACCESS_SECRET, "permissions": []},
                WORKLOAD: {
                    "federated_subject": f"system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}",
                    "permissions": ["get"],
                },
                MANAGED: {"managed": True, "permissions": ["get"]},
            },
            federation={"issuer": ISSUER, "public_key_pem": public_pem.decode()},
        )
        self._backups: dict[tuple[str, str], str] = {}
        self._credentials = StaticCredentials(
            secrets={
                ("azure-creds", "client-secret"): READER_SECRET.encode(),
                ("azure-creds-wrong", "client-secret"): WRONG_SECRET.encode(),
                ("azure-creds-no-access", "client-secret"): NO_ACCESS_SECRET.encode(),
                ("azure-creds-get-only", "client-secret"): GET_ONLY_SECRET.encode(),
            },
            tokens={
                name: _service_account_token(self._issuer_key, name)
                for name in (SERVICE_ACCOUNT, OTHER_SERVICE_ACCOUNT)
            },
        )

    # -- Backend ------------------------------------------------------------------------

    def provider_config(self, auth: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
        """The store block for the reader app, or for another `auth` block."""
        return {
            "vaultUrl": self.emulator.url,
            "tenantId": self.emulator.tenant_id,
            "authorityHost": self.emulator.url,
            "caBundle": base64.b64encode(self.emulator.ca_pem).decode(),
            "verifyChallengeResource": False,
            "auth": auth or _client_secret(READER, "azure-creds"),
        }

    def bad_credentials_config(self) -> Mapping[str, Any]:
        return self.provider_config(_client_secret(READER, "azure-creds-wrong"))

    def no_access_config(self) -> Mapping[str, Any]:
        """Credentials Entra ID accepts for an app the vault gives no permission."""
        return self.provider_config(_client_secret(NO_ACCESS, "azure-creds-no-access"))

    def get_only_config(self) -> Mapping[str, Any]:
        """An app that may read values but not list the vault (an access policy with Get only)."""
        return self.provider_config(_client_secret(GET_ONLY, "azure-creds-get-only"))

    def workload_identity_config(self, service_account: str = SERVICE_ACCOUNT) -> Mapping[str, Any]:
        return self.provider_config(
            {"workloadIdentity": {"clientId": WORKLOAD, "serviceAccountRef": {"name": service_account}}}
        )

    def managed_identity_config(self) -> Mapping[str, Any]:
        return self.provider_config({"managedIdentity": {"clientId": MANAGED}})

    def credentials(self) -> StaticCredentials:
        return self._credentials

    def write(self, key: str, value: str) -> str:
        return self.write_tagged(key, value, {})

    def write_tagged(self, key: str, value: str, tags: dict[str, str]) -> str:
        name = secret_name(key)
        version = self.emulator.set_secret(WRITER, WRITER_SECRET, name, value, tags)
        self._backups[(name, version)] = self._vault("POST", f"/secrets/{name}/backup")["value"]
        return version

    def _vault(self, method: str, path: str, body: object = None) -> dict[str, Any]:
        return self.emulator.vault(WRITER, WRITER_SECRET, method, path, body)

    def delete(self, key: str) -> None:
        """Deletes `key` and purges it, so that its name can be set again."""
        self._vault("DELETE", f"/secrets/{secret_name(key)}")
        self._vault("DELETE", f"/deletedsecrets/{secret_name(key)}")

    def roll_back(self, key: str, version: str) -> None:
        """Key Vault cannot make an earlier version current, except by restoring a backup
        taken while it was: so `write` keeps a backup of each version it makes, and this
        deletes, purges and restores the one of `version`."""
        backup = self._backups[(secret_name(key), version)]
        self.delete(key)
        self._vault("POST", "/secrets/restore", {"value": backup})

    def settle(self) -> None:
        """Waits until the second of the last write has passed: Key Vault's times are whole
        seconds, so a value read within its own second carries no stamp (it is read again)."""
        time.sleep(1.05 - time.time() % 1)

    def stop(self) -> None:
        self.emulator.stop()

    def start(self) -> None:
        self.emulator.start()

    def close(self) -> None:
        self.emulator.remove()


def start_backend() -> AzureBackend:
    backend = AzureBackend()
    backend.start()
    return backend
