"""A `Credentials` for provider tests: Secrets and ServiceAccount tokens from dicts.

In the operator, `Credentials` reads the cluster (kube.py, bound to a store).
Provider tests run without a cluster, so this double answers from memory and
records the token requests, which lets a test check the audience a provider asks
for. It raises `CredentialNotFound` naming the field, like the real one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from vaultsync.errors import CredentialNotFound
from vaultsync.providers.base import SecretKeySelector, ServiceAccountSelector

OPERATOR = "<operator>"  # the name under which `tokens` holds the operator's own token


@dataclass
class TokenRequest:
    service_account: str
    audiences: tuple[str, ...]


@dataclass
class StaticCredentials:
    secrets: Mapping[tuple[str, str], bytes] = field(default_factory=dict)  # (name, key) → value
    tokens: Mapping[str, str] = field(default_factory=dict)  # ServiceAccount name → token
    requests: list[TokenRequest] = field(default_factory=list)

    async def secret_value(self, selector: SecretKeySelector, field: str) -> bytes:
        try:
            return self.secrets[selector.name, selector.key]
        except KeyError:
            raise CredentialNotFound(
                f"{field}: Secret {selector.name!r} has no key {selector.key!r}"
            ) from None

    async def service_account_token(
        self, selector: ServiceAccountSelector, field: str, audiences: Sequence[str]
    ) -> str:
        if selector.name not in self.tokens:
            raise CredentialNotFound(f"{field}: ServiceAccount {selector.name!r} not found")
        self.requests.append(TokenRequest(selector.name, tuple(selector.audiences or audiences)))
        return self.tokens[selector.name]

    async def operator_token(self, field: str, audiences: Sequence[str]) -> str:
        """The operator's own ServiceAccount is the entry `OPERATOR` of `tokens`."""
        if OPERATOR not in self.tokens:
            raise CredentialNotFound(f"{field}: the operator's ServiceAccount is not known")
        self.requests.append(TokenRequest(OPERATOR, tuple(audiences)))
        return self.tokens[OPERATOR]
