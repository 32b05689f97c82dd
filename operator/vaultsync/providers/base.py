"""The provider contract: what every vault backend implements, and nothing more.

A backend is a `Provider` (parses its block of a store's spec and makes a
client) and a `SecretsClient` (reads values). The contract is deliberately
small, like External Secrets Operator's `SecretsClient`: read one, read many,
validate, close. JSON properties, templating, caching and Kubernetes writes
are the core's job, so every provider gets them for free and identically.

Providers reach the cluster (credential Secrets, ServiceAccount tokens) only
through `Credentials`, which the core binds to the store: a namespaced store's
`Credentials` refuse any namespace but its own, so no provider can be tricked
into reading another namespace's Secrets, and refuse the operator's own
ServiceAccount. Credential text goes through `credential_text`, which refuses
an empty value: SDKs read "" as "nothing given" and fall back to their default
chain, which is the operator's own identity.
"""

from __future__ import annotations

import asyncio
import ipaddress
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from vaultsync.errors import InvalidSpec, InvalidStoreConfig, VaultsyncError


@dataclass(frozen=True)
class RemoteRef:
    """One remote value: a key and an optional version pin ("" = latest)."""

    key: str
    version: str = ""


@dataclass(frozen=True)
class RemoteValue:
    """Bytes read from a vault and the provider's id of the version read."""

    value: bytes
    version: str = ""
    # What `SecretsClient.stamps` says of this value while it is current ("" = cannot say).
    stamp: str = field(default="", compare=False)

    def __repr__(self) -> str:  # never print the value
        return f"RemoteValue(version={self.version!r}, size={len(self.value)})"


@dataclass(frozen=True)
class FindQuery:
    """What `dataFrom.find` asks a provider to list: names under `path` (a prefix; "" = all)
    carrying every tag of `tags`. The name regexp is applied by the core to what is listed,
    the same way for every provider (vaultsync.finder)."""

    path: str = ""
    tags: tuple[tuple[str, str], ...] = ()


class ListingUnsupported(InvalidSpec):
    """This store's provider (or its configuration) cannot list secrets."""


@dataclass(frozen=True)
class StoreContext:
    """Which store a client serves; decides whose identity may be used."""

    kind: str
    name: str
    namespace: str | None  # None for a ClusterSecretStore
    # Address ranges this store's connections may not reach (see vaultsync.egress);
    # the core sets it for namespaced stores only.
    denied_egress: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @property
    def may_use_operator_identity(self) -> bool:
        """Only a cluster admin's ClusterSecretStore may borrow the operator's own identity."""
        return self.namespace is None

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


class ConfigModel(BaseModel):
    """Base of every provider config: camelCase in YAML, snake_case in Python, unknown fields rejected.

    The models are also the CRDs' schema (vaultsync.providers.schema, `make crds`): every
    field has a description, its bounds and its CEL rules.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True, alias_generator=to_camel)
    # CEL rules only a namespaced SecretStore has, written for the provider's own block
    # (`self` is `spec.provider.<name>`); the CRD generator moves them up to spec.provider.
    namespaced_rules: ClassVar[tuple[dict[str, str], ...]] = ()


K8S_NAME_MAX_LENGTH = 253  # a Secret's or ServiceAccount's name, a Secret's key
K8S_NAMESPACE_MAX_LENGTH = 63
MAX_AUDIENCES = 8
Audience = Annotated[str, Field(min_length=1, max_length=K8S_NAME_MAX_LENGTH)]


def audiences_field(description: str) -> Any:
    """`audiences` of a ServiceAccount selector: at most 8, each 1-253 characters; empty = the
    provider's own audience, which `description` names."""
    return Field(default_factory=list, max_length=MAX_AUDIENCES, description=description)


def namespace_field(what: str, where: str) -> Any:
    """`namespace` of a selector: a SecretStore may name only its own, a ClusterSecretStore any."""
    return Field(
        default=None,
        max_length=K8S_NAMESPACE_MAX_LENGTH,
        description=f"Namespace of the {what}. A SecretStore may name only its own (the default); "
        f"a ClusterSecretStore names {where}.",
    )


class SecretKeySelector(ConfigModel):
    """A key of a Kubernetes Secret holding a credential."""

    name: str = Field(min_length=1, max_length=K8S_NAME_MAX_LENGTH, description="Name of the Secret.")
    key: str = Field(min_length=1, max_length=K8S_NAME_MAX_LENGTH, description="Key within the Secret.")
    namespace: str | None = namespace_field("Secret", "where its credentials live")


class ServiceAccountSelector(ConfigModel):
    """A ServiceAccount whose token is requested from the TokenRequest API.

    A provider subclasses it to say which audience it requests by default.
    """

    name: str = Field(min_length=1, max_length=K8S_NAME_MAX_LENGTH, description="Name of the ServiceAccount.")
    namespace: str | None = namespace_field("ServiceAccount", "where it lives")
    audiences: list[Audience] = audiences_field(
        "Audiences of the requested token; default the provider's own."
    )


class Credentials(Protocol):
    """What a provider may ask of the cluster, bound to one store.

    `field` is the spec path of the selector, used in error messages.
    """

    async def secret_value(self, selector: SecretKeySelector, field: str) -> bytes: ...

    async def service_account_token(
        self, selector: ServiceAccountSelector, field: str, audiences: Sequence[str]
    ) -> str:
        """A token of the selected ServiceAccount for `selector.audiences`, else `audiences`
        (the provider's own audience, never the API server's)."""
        ...

    async def operator_token(self, field: str, audiences: Sequence[str]) -> str:
        """A token of the operator's own ServiceAccount for `audiences`; ClusterSecretStores only."""
        ...


async def credential_text(credentials: Credentials, selector: SecretKeySelector, field: str) -> str:
    """A credential held in a Secret, as text: UTF-8, surrounding whitespace removed, never empty.

    Refused here rather than passed on: boto3, hvac and azure-identity read an empty
    credential as "none given" and look for one elsewhere, in the operator's environment.
    """
    raw = await credentials.secret_value(selector, field)
    where = f"key {selector.key!r} of Secret {selector.name!r}"
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise InvalidStoreConfig(f"{field}: {where} is not UTF-8 text") from None
    if not text:
        raise InvalidStoreConfig(f"{field}: {where} is empty")
    if not text.isprintable():
        raise InvalidStoreConfig(f"{field}: {where} contains control characters")
    return text


class CallCounter(Protocol):
    """The store's call budget as a client sees it (vaultsync.callbudget)."""

    def spend(self) -> None: ...

    def throttled(self) -> None: ...


class SecretsClient(ABC):
    """Reads values from one store's vault. Async; blocking SDKs are wrapped inside.

    Every request a client makes to its vault is counted with `count_call`, and every
    throttling answer with `count_throttled`: the store's budget (set by the core) follows them.
    """

    budget: CallCounter | None = None

    def count_call(self) -> None:
        if self.budget is not None:
            self.budget.spend()

    def count_throttled(self) -> None:
        if self.budget is not None:
            self.budget.throttled()

    @abstractmethod
    async def get_secret(self, ref: RemoteRef) -> RemoteValue:
        """The value at `ref`; raises `SecretNotFound` if it does not exist."""

    async def get_secrets(
        self, refs: Sequence[RemoteRef]
    ) -> Mapping[RemoteRef, RemoteValue | VaultsyncError]:
        """Many values at once; a backend with a batch API overrides this."""
        results = await asyncio.gather(*(self.get_secret(r) for r in refs), return_exceptions=True)
        out: dict[RemoteRef, RemoteValue | VaultsyncError] = {}
        for ref, result in zip(refs, results, strict=True):
            if isinstance(result, RemoteValue | VaultsyncError):
                out[ref] = result
            else:
                raise result
        return out

    async def list_keys(self, query: FindQuery, limit: int) -> list[str]:
        """The remote keys `query` selects, each readable as `RemoteRef(key)`; at most
        `limit` + 1 (one more says "too many", and the listing stops there).

        A backend that cannot list keeps this default: `dataFrom.find` on its stores is
        refused with this message, and its page in docs/providers/ says so.
        """
        raise ListingUnsupported(
            "this store's provider cannot list secrets; name them in data or dataFrom.extract"
        )

    async def stamps(
        self, due: Sequence[RemoteRef], known: Sequence[RemoteRef]
    ) -> Mapping[RemoteRef, str | None] | None:
        """Change detection without reading values: a stamp per ref that changes whenever the
        value at that ref does (equal to `RemoteValue.stamp` of a read of it), None for a ref
        that does not exist.

        Every ref of `due` is asked about; refs of `known` (the store's other values held)
        are answered too when that costs no extra call (one listing answers all). A ref left
        out is not answered and is read. None: this backend has no cheaper way than a read.
        """
        return None

    @abstractmethod
    async def validate(self) -> None:
        """Proves the store works (auth accepted); raises with an actionable message."""

    async def close(self) -> None:
        """Releases connections and tokens."""
        return None


class Provider(ABC):
    """A backend: parses its block of `spec.provider` and makes clients."""

    name: ClassVar[str]
    config_model: ClassVar[type[ConfigModel]]

    def parse_config(self, raw: Mapping[str, Any]) -> ConfigModel:
        """Validates the block; the error names the exact field under `spec.provider.<name>`."""
        try:
            return self.config_model.model_validate(raw)
        except ValidationError as exc:
            raise InvalidStoreConfig(describe_validation_error(exc, f"spec.provider.{self.name}")) from None

    @abstractmethod
    async def new_client(
        self, config: ConfigModel, store: StoreContext, credentials: Credentials
    ) -> SecretsClient:
        """A client authenticated for `store`."""


def describe_validation_error(exc: ValidationError, prefix: str) -> str:
    """`spec.provider.aws.region: Field required` — field paths and reasons, never input values."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False):
        path = prefix
        for loc in err["loc"]:
            path += f"[{loc}]" if isinstance(loc, int) else f".{loc}" if path else str(loc)
        parts.append(f"{path}: {err['msg']}")
    return "; ".join(parts)
