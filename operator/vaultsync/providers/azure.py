"""The `azurekv` provider: secrets from Azure Key Vault, through the async Azure SDK.

Key Vault authenticates with Entra ID (Azure AD) tokens. A store names one of three identities:
an app's client secret held in a Kubernetes Secret; workload identity, where a token that the
cluster issues for a ServiceAccount is exchanged as a federated client assertion; or the
managed identity of the node/pod the operator runs on, which is the operator's own identity and
therefore refused to namespaced SecretStores.

Secret names in Key Vault allow only letters, digits and '-'. So that keys written for
path-style vaults work unchanged, each '/' of a `remoteRef.key` is read as '-':
`production/db` reads the secret `production-db`. Any other character is refused with
`InvalidSpec`, naming the key and a valid spelling.

Everything Azure-specific stays in this file: the config model, the credential objects, the
secret-name rules and the conversion of azure-core exceptions into vaultsync's errors, done
once in `_converted`. Two settings exist for non-public clouds and local emulators:
`authorityHost` (where tokens are requested; default the public cloud's
`https://login.microsoftonline.com`) and `caBundle` (the CAs trusted for both the vault and the
authority, replacing the system store). TLS is always verified; a test points `caBundle` at its
emulator's CA rather than turning verification off. `verifyChallengeResource: false` is only
for emulators whose address is not a `*.vault.azure.net`-style host.

Change detection (`stamps`) lists the vault's secret properties, 25 a page, each with the
`updated` time of its current version, in whole seconds: one listing answers every key the
store holds, so it is used while it takes no more pages than there are keys to confirm (the
alternative, Key Vault having no metadata-only read, is a GET per key). A value read within
the second it was written in (the vault's own `Date` says so) gets no stamp: a later write in
that second would list the same time, so such a value is read again at its next refresh.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import math
import re
import ssl
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import aclosing, contextmanager
from datetime import datetime
from types import TracebackType
from typing import Any, ClassVar, Self, cast
from urllib.parse import urlsplit

import aiohttp
from azure.core.async_paging import AsyncPageIterator
from azure.core.credentials import AccessToken
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import AioHttpTransport
from azure.identity.aio import (
    ClientAssertionCredential,
    ClientSecretCredential,
    ManagedIdentityCredential,
)
from azure.keyvault.secrets import SecretProperties
from azure.keyvault.secrets.aio import SecretClient
from pydantic import ConfigDict, Field, field_validator, model_validator

from vaultsync.egress import GuardedResolver, guard_for
from vaultsync.errors import (
    AuthenticationError,
    EgressRefused,
    InvalidSpec,
    InvalidStoreConfig,
    PermissionDenied,
    ProviderError,
    SecretNotFound,
    ThrottledError,
    VaultsyncError,
)
from vaultsync.origins import HTTPS_ONLY, check_origin
from vaultsync.providers.base import (
    Audience,
    ConfigModel,
    Credentials,
    FindQuery,
    ListingUnsupported,
    Provider,
    RemoteRef,
    RemoteValue,
    SecretKeySelector,
    SecretsClient,
    ServiceAccountSelector,
    StoreContext,
    audiences_field,
    credential_text,
)
from vaultsync.providers.schema import cel, crd, exactly_one, origin_field

FIELD = "spec.provider.azurekv"
ID_MAX_LENGTH = 256  # client and tenant ids
TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
# A ServiceAccount token just fetched serves the token requests that queued behind it.
ASSERTION_REUSE_SECONDS = 60.0
# Key Vault object names: 1-127 letters, digits and dashes; versions are 32 hex digits.
# Both are checked before any request, so a key can never steer the URL path.
SECRET_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
# The tenant becomes a path segment of the token URL: no '/', no '..', no trailing newline.
TENANT_ID_PATTERN = r"^[0-9a-zA-Z]([0-9a-zA-Z.-]*[0-9a-zA-Z])?$"
TENANT_ID = re.compile(TENANT_ID_PATTERN)
SECRET_VERSION = re.compile(r"^[0-9a-zA-Z]{1,64}$")
CONNECTION_ERRORS = (ServiceRequestError, ServiceResponseError, aiohttp.ClientError)
LIST_PAGE_SIZE = 25  # Key Vault lists at most 25 secrets a page
# `validate()` reads this name: a 404 proves the token and the Get permission are accepted.
VALIDATION_PROBE = "vaultsync-connectivity-check"
# The operator has its own backoff; the SDK retries only briefly so a reconcile never hangs.
PIPELINE_SETTINGS: dict[str, Any] = {
    "retry_total": 2,
    "retry_backoff_factor": 0.5,
    "retry_backoff_max": 4,
    "connection_timeout": 10,
    "read_timeout": 30,
    # A vault that answers with a redirect gets an error, not a request to the new place.
    "permit_redirects": False,
}


class ClientSecretAuth(ConfigModel):
    client_id: str = Field(min_length=1, max_length=ID_MAX_LENGTH, description="The application (client) id.")
    secret_ref: SecretKeySelector = Field(description="The key of a Secret holding the client secret.")


class AzureServiceAccount(ServiceAccountSelector):
    audiences: list[Audience] = audiences_field(
        f"Audiences of the requested token; default {TOKEN_EXCHANGE_AUDIENCE}."
    )


class WorkloadIdentityAuth(ConfigModel):
    client_id: str = Field(
        min_length=1,
        max_length=ID_MAX_LENGTH,
        description="The application (client) id federated with the ServiceAccount.",
    )
    service_account_ref: AzureServiceAccount = Field(
        description="The ServiceAccount whose token is requested."
    )


class ManagedIdentityAuth(ConfigModel):
    client_id: str = Field(
        default="",
        max_length=ID_MAX_LENGTH,
        description="Client id of a user-assigned identity; empty uses the system-assigned one.",
    )


class AzureAuth(ConfigModel):
    model_config = ConfigDict(
        json_schema_extra=crd(
            exactly_one("azurekv.auth", ("clientSecret", "workloadIdentity", "managedIdentity"))
        )
    )

    client_secret: ClientSecretAuth | None = Field(
        default=None, description="A service principal's client id and secret."
    )
    workload_identity: WorkloadIdentityAuth | None = Field(
        default=None,
        description="Microsoft Entra Workload ID: a ServiceAccount token exchanged for an Entra token.",
    )
    managed_identity: ManagedIdentityAuth | None = Field(
        default=None,
        description="The managed identity of the node the operator runs on (ClusterSecretStore only).",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        chosen = [self.client_secret, self.workload_identity, self.managed_identity]
        if sum(method is not None for method in chosen) != 1:
            raise ValueError("exactly one of clientSecret, workloadIdentity, managedIdentity must be set")
        return self


class AzureKeyVaultConfig(ConfigModel):
    """Azure Key Vault."""

    model_config = ConfigDict(
        json_schema_extra=crd(
            cel(
                "has(self.auth.managedIdentity) || (has(self.tenantId) && self.tenantId != '')",
                "azurekv.tenantId is required with clientSecret and workloadIdentity auth",
                field_path=".tenantId",
                reason="FieldValueRequired",
            )
        )
    )
    # A namespaced store never borrows the operator's identity: no managed identity.
    namespaced_rules: ClassVar[tuple[dict[str, str], ...]] = (
        cel(
            "!has(self.auth.managedIdentity)",
            "azurekv.auth.managedIdentity is not allowed in a SecretStore: it is the operator's own "
            "identity; use a ClusterSecretStore",
            field_path=".auth.managedIdentity",
            reason="FieldValueForbidden",
        ),
    )

    vault_url: str = origin_field(
        "azurekv.vaultUrl",
        HTTPS_ONLY,
        optional=False,
        description="The vault's URL, e.g. https://shop.vault.azure.net. An origin only: "
        "https://host[:port], no path, query or fragment.",
    )
    tenant_id: str = Field(
        default="",
        max_length=ID_MAX_LENGTH,
        description="The Microsoft Entra tenant (directory) id.",
        # In the CRD only: `_tenant` checks it here, with a message that says what a tenant is.
        json_schema_extra=crd(pattern=TENANT_ID_PATTERN),
    )
    authority_host: str = origin_field(
        "azurekv.authorityHost",
        HTTPS_ONLY,
        optional=True,
        description="Where tokens are requested; default Azure's public cloud "
        "(https://login.microsoftonline.com). Set it for a sovereign cloud, or for a local "
        "emulator's token endpoint in development.",
    )
    ca_bundle: str = Field(
        default="",
        description="Base64-encoded PEM CA certificates trusted for both the vault and "
        "authorityHost, replacing the system's CAs (a private cloud, a local emulator); empty "
        "trusts the system's CAs. TLS is always verified.",
        json_schema_extra=crd(format="byte"),
    )
    verify_challenge_resource: bool = Field(
        default=True,
        description="Whether the vault's authentication challenge must name a Key Vault resource. "
        "Set false only for an emulator whose address is not a *.vault.azure.net-style host.",
    )
    auth: AzureAuth = Field(description="Exactly one method; managedIdentity only in a ClusterSecretStore.")

    @field_validator("vault_url", "authority_host")
    @classmethod
    def _https_origin(cls, url: str) -> str:
        return check_origin(url, HTTPS_ONLY) if url else ""

    @field_validator("tenant_id")
    @classmethod
    def _tenant(cls, tenant: str) -> str:
        if tenant and (not TENANT_ID.fullmatch(tenant) or ".." in tenant or len(tenant) > ID_MAX_LENGTH):
            raise ValueError("must be a tenant id (a GUID) or a domain such as contoso.onmicrosoft.com")
        return tenant

    @field_validator("ca_bundle")
    @classmethod
    def _pem(cls, value: str) -> str:
        if value:
            try:
                pem = base64.b64decode(value, validate=True)
            except binascii.Error:
                raise ValueError("must be base64 of PEM certificates") from None
            if b"-----BEGIN CERTIFICATE-----" not in pem:
                raise ValueError("must be base64 of PEM certificates")
        return value

    @model_validator(mode="after")
    def _tenant_for_app_credentials(self) -> Self:
        if self.auth.managed_identity is None and not self.tenant_id:
            raise ValueError("tenantId is required with clientSecret and workloadIdentity")
        return self

    def ssl_context(self) -> ssl.SSLContext:
        """Verifies against caBundle when set, else the system's CAs."""
        cadata = base64.b64decode(self.ca_bundle).decode() if self.ca_bundle else None
        return ssl.create_default_context(cadata=cadata)


class WorkloadIdentityCredential(AsyncTokenCredential):
    """A client-assertion credential whose assertion is a fresh ServiceAccount token.

    azure-identity asks for the assertion through a synchronous callback, while vaultsync's
    TokenRequest call is async; so the ServiceAccount token is fetched here, before the SDK's
    policy asks for an Entra token (at first use, then about once an hour). Callers are
    serialised: when many reads start at once, the first fetches one ServiceAccount token and
    one Entra token, and the others get the cached Entra token instead of a flood of both.
    """

    def __init__(
        self,
        fetch_assertion: Callable[[], Awaitable[str]],
        tenant_id: str,
        client_id: str,
        **kwargs: Any,
    ) -> None:
        self._fetch_assertion = fetch_assertion
        self._assertion = ""
        self._fetched_at = -ASSERTION_REUSE_SECONDS
        self._lock = asyncio.Lock()
        self._inner = ClientAssertionCredential(tenant_id, client_id, lambda: self._assertion, **kwargs)

    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        async with self._lock:
            if time.monotonic() - self._fetched_at >= ASSERTION_REUSE_SECONDS:
                self._assertion = await self._fetch_assertion()
                self._fetched_at = time.monotonic()
            return await self._inner.get_token(
                *scopes, claims=claims, tenant_id=tenant_id, enable_cae=enable_cae, **kwargs
            )

    async def close(self) -> None:
        await self._inner.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.close()


class AzureKeyVaultClient(SecretsClient):
    def __init__(
        self,
        config: AzureKeyVaultConfig,
        credential: AsyncTokenCredential,
        session: aiohttp.ClientSession,
        store: StoreContext,
        identity: str,
        redact: tuple[str, ...],
    ) -> None:
        self._config = config
        self._credential = credential
        self._session = session
        self._store = store
        self._identity = identity  # for messages: which credential a refusal concerns
        self._redact = redact  # credential material that must never reach a message
        self._listing_allowed = True  # False once the vault refuses List (Get-only access policy)
        # Pages a whole listing takes: exact once one ended, else a lower bound (0: not tried).
        self._pages = 0.0
        self._client = SecretClient(
            config.vault_url,
            credential,
            verify_challenge_resource=config.verify_challenge_resource,
            transport=AioHttpTransport(session=session, session_owner=False),
            **PIPELINE_SETTINGS,
        )

    async def get_secret(self, ref: RemoteRef) -> RemoteValue:
        name, version = secret_name(ref.key), _checked_version(ref)
        served: list[str] = []

        def keep_date(pipeline_response: Any, deserialized: Any, _headers: Any) -> Any:
            served.append(pipeline_response.http_response.headers.get("Date") or "")
            return deserialized

        with self._converted(ref, name):
            secret = await self._client.get_secret(name, version or None, cls=keep_date)
        properties = secret.properties
        stamp = "" if version else read_stamp(properties.updated_on, served[0] if served else "")
        return RemoteValue((secret.value or "").encode(), properties.version or "", stamp)

    async def stamps(
        self, due: Sequence[RemoteRef], known: Sequence[RemoteRef]
    ) -> Mapping[RemoteRef, str | None] | None:
        """The `updated` second of each unpinned ref's current version, from one listing of
        the vault, when that listing takes no more pages than there are keys (else None: they
        are read). A pinned version is immutable but may be disabled: it is read."""
        names: dict[RemoteRef, str] = {}
        for ref in dict.fromkeys([*due, *known]):
            if not ref.version and SECRET_NAME.match(ref.key.replace("/", "-")):
                names[ref] = secret_name(ref.key).lower()
        if not self._listing_allowed or not names or self._pages > len(names):
            return None
        listed = await self._list(cap=len(names))
        if listed is None:
            return None
        return {ref: listed.get(name) for ref, name in names.items()}

    async def _list(self, cap: int) -> dict[str, str | None] | None:
        """Name (lower case) → stamp of every secret in the vault (None for a disabled one),
        or None when refused or when it passes `cap` pages (learnt: tried again only once
        more keys are held than that)."""
        found: dict[str, str | None] = {}
        pages = 0
        try:
            async with aclosing(self._listed_pages()) as listing:
                async for items, more in listing:
                    pages += 1
                    for item in items:
                        if item.name:
                            found[item.name.lower()] = listed_stamp(item)
                    if not more:
                        self._pages = float(pages)
                        return found
                    if pages >= cap:
                        self._pages = max(self._pages, cap + 1.0)
                        return None
        except PermissionDenied:
            self._listing_allowed = False
            return None
        return found

    async def list_keys(self, query: FindQuery, limit: int) -> list[str]:
        """List Secrets (names and tags, 25 a page), enabled secrets only, as External
        Secrets Operator does. Key Vault names have no folders: `path` is refused."""
        if query.path:
            raise ListingUnsupported(
                "Azure Key Vault secret names have no paths; find by name.regexp or tags"
            )
        wanted = dict(query.tags)
        names: list[str] = []
        async with aclosing(self._listed_pages()) as listing:
            async for items, _more in listing:
                for properties in items:
                    tags, name = properties.tags or {}, properties.name
                    enabled = properties.enabled is not False
                    if name and enabled and all(tags.get(k) == v for k, v in wanted.items()):
                        names.append(name)
                if len(names) > limit:
                    break
        return names[: limit + 1]

    async def _listed_pages(self) -> AsyncGenerator[tuple[list[SecretProperties], bool]]:
        """The vault's secret properties (ids, attributes, tags; no values), a page at a time
        with whether another follows; each page is one request, fetched only when asked for.
        Change detection and dataFrom.find both list through here, so neither follows a
        next-page link to another address: it would carry the store's bearer token there (past
        the egress guard when it names an IP address), so it is refused instead."""
        pager = cast(
            AsyncPageIterator[SecretProperties],
            self._client.list_properties_of_secrets(max_page_size=LIST_PAGE_SIZE).by_page(),
        )
        while True:
            with self._converted(None, ""):
                page = await anext(pager, None)
                items = [item async for item in page] if page is not None else []
            following = pager.continuation_token if page is not None else None
            if following and not _same_origin(str(following), self._config.vault_url):
                raise ProviderError(
                    f"{self._store}: vault {self._config.vault_url} sent a listing page link to "
                    "another address; vaultsync does not follow it"
                )
            yield items, bool(following)
            if not following:
                return

    async def validate(self) -> None:
        try:
            await self.get_secret(RemoteRef(VALIDATION_PROBE))
        except SecretNotFound:
            return

    async def close(self) -> None:
        await self._client.close()
        await self._credential.close()
        await self._session.close()

    @contextmanager
    def _converted(self, ref: RemoteRef | None, name: str) -> Iterator[None]:
        """Azure SDK exceptions → vaultsync errors, with messages that say what to fix
        (`ref` None: a listing of the vault)."""
        vault, store = self._config.vault_url, self._store
        self.count_call()
        try:
            yield
        except VaultsyncError:
            raise
        except ResourceNotFoundError:
            if ref is None:
                raise ProviderError(f"{store}: vault {vault} has no secret listing (HTTP 404)") from None
            pinned = f" at version {ref.version!r}" if ref.version else ""
            named = f" (Azure name {name!r})" if name != ref.key else ""
            raise SecretNotFound(f"key {ref.key!r}{named}{pinned} does not exist in vault {vault}") from None
        except ClientAuthenticationError as exc:
            if any(isinstance(e, CONNECTION_ERRORS) for e in _chain(exc)):
                raise ProviderError(self._unreachable(exc)) from None
            status = getattr(exc.response, "status_code", None) or 0
            if 300 <= status < 400:  # azure-identity follows no redirect; say so by name
                raise EgressRefused(
                    f"{FIELD}.authorityHost: the token endpoint answered with a redirect "
                    f"(HTTP {status}); vaultsync does not follow redirects"
                ) from None
            raise AuthenticationError(
                f"{store}: Azure refused {self._identity} for vault {vault}: "
                f"{self._summary(exc)}; check the credentials under {FIELD}.auth and "
                f"{FIELD}.tenantId"
            ) from None
        except HttpResponseError as exc:
            error = self._from_status(exc)
            if isinstance(error, ThrottledError):
                self.count_throttled()
            raise error from None
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise ProviderError(self._unreachable(exc)) from None
        except ValueError as exc:
            if "challenge resource" not in str(exc):
                raise ProviderError(f"{store}: the Azure SDK failed: {self._summary(exc)}") from None
            raise InvalidStoreConfig(
                f"{FIELD}.vaultUrl: {self._summary(exc)}; for a vault outside Azure's own "
                f"domains (an emulator) set {FIELD}.verifyChallengeResource: false"
            ) from None

    def _from_status(self, exc: HttpResponseError) -> VaultsyncError:
        vault, store = self._config.vault_url, self._store
        status = exc.status_code or 0
        if 300 <= status < 400:
            return EgressRefused(
                f"{FIELD}.vaultUrl: vault {vault} answered with a redirect (HTTP {status}); "
                "vaultsync does not follow redirects"
            )
        if status == 403:
            # Entra ID issued the token, so the identity is proven; the vault's RBAC or access
            # policy denies it this read. Not a login failure: the shared client is kept.
            return PermissionDenied(
                f"{store}: {self._identity} may not read secrets in vault {vault} "
                f"({self._summary(exc)}); check that it holds the 'Key Vault Secrets User' role "
                "on the vault (RBAC) or a Get permission for secrets (access policy)"
            )
        if status == 429:
            retry_after = getattr(exc.response, "headers", {}).get("Retry-After")
            return ThrottledError(
                f"{store}: vault {vault} is throttling requests (HTTP 429)",
                retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
            )
        return ProviderError(f"{store}: vault {vault} answered HTTP {status}: {self._summary(exc)}")

    def _unreachable(self, exc: Exception) -> str:
        vault, authority = self._config.vault_url, self._config.authority_host
        where = f"vault {vault}" + (f" or authority {authority}" if authority not in ("", vault) else "")
        if any(isinstance(e, ssl.SSLCertVerificationError) for e in _chain(exc)):
            return (
                f"{self._store}: the TLS certificate of {where} is not trusted "
                f"({self._summary(exc)}); check {FIELD}.caBundle, which must hold the CA that "
                "signed it"
            )
        return f"{self._store}: cannot reach {where}: {self._summary(exc)}"

    def _summary(self, exc: Exception) -> str:
        """The first line of an SDK message, with any credential material removed."""
        text = str(getattr(exc, "message", None) or exc).strip().splitlines()
        summary = text[0] if text else type(exc).__name__
        for sensitive in self._redact:
            summary = summary.replace(sensitive, "<redacted>")
        return summary


def secret_name(key: str) -> str:
    """The Key Vault secret name a `remoteRef.key` reads: each '/' becomes '-'."""
    name = key.replace("/", "-")
    if not SECRET_NAME.match(name):
        suggestion = re.sub(r"[^0-9a-zA-Z-]+", "-", key).strip("-")[:127] or "my-secret"
        raise InvalidSpec(
            f"key {key!r} is not a valid Azure Key Vault secret name: use 1-127 letters, "
            f"digits, '-' (and '/', read as '-'), e.g. {suggestion!r}"
        )
    return name


def read_stamp(updated: datetime | None, served_at: str) -> str:
    """The stamp of a value read: its `updated` second, or "" when the vault answered within
    that second (its `Date`), since a version written later in the same second would list the
    same time."""
    if updated is None or not served_at:
        return ""
    try:
        served = email.utils.parsedate_to_datetime(served_at)
    except (TypeError, ValueError):
        return ""
    second = math.floor(updated.timestamp())
    return str(second) if served.timestamp() >= second + 1 else ""


def listed_stamp(properties: SecretProperties) -> str | None:
    """The stamp a listed secret's current version has (see `read_stamp`); None if disabled."""
    if not properties.enabled or properties.updated_on is None:
        return None
    return str(math.floor(properties.updated_on.timestamp()))


def _same_origin(url: str, origin: str) -> bool:
    a, b = urlsplit(url), urlsplit(origin)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)


def _checked_version(ref: RemoteRef) -> str:
    if ref.version and not SECRET_VERSION.match(ref.version):
        raise InvalidSpec(f"version {ref.version!r} of key {ref.key!r} is not an Azure Key Vault version id")
    return ref.version


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """An exception and its causes: azure-identity wraps a token request's connection error."""
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


class AzureKeyVaultProvider(Provider):
    name: ClassVar[str] = "azurekv"
    config_model: ClassVar[type[ConfigModel]] = AzureKeyVaultConfig

    async def new_client(
        self, config: ConfigModel, store: StoreContext, credentials: Credentials
    ) -> SecretsClient:
        assert isinstance(config, AzureKeyVaultConfig)
        if config.auth.managed_identity is not None and not store.may_use_operator_identity:
            raise InvalidStoreConfig(
                f"{FIELD}.auth.managedIdentity: the managed identity is the operator's own, so "
                f"only a ClusterSecretStore may use it; {store} must use clientSecret or "
                "workloadIdentity"
            )
        client_secret = ""
        if config.auth.client_secret is not None:
            client_secret = await _client_secret(config.auth.client_secret, credentials)
        session = aiohttp.ClientSession(
            connector=_connector(config, store),
            trust_env=True,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
        )
        try:
            credential, identity = _credential(config, store, credentials, client_secret, session)
        except BaseException as exc:
            await session.close()
            if isinstance(exc, ValueError):  # azure-identity's own checks of ids and URLs
                raise InvalidStoreConfig(f"{FIELD}.auth: {exc}") from None
            raise
        redact = (client_secret,) if client_secret else ()
        return AzureKeyVaultClient(config, credential, session, store, identity, redact)


def _connector(config: AzureKeyVaultConfig, store: StoreContext) -> aiohttp.TCPConnector:
    """A connector for the vault and the authority, resolving under the store's egress guard."""
    vault = guard_for(store.denied_egress, f"{FIELD}.vaultUrl")
    authority = guard_for(store.denied_egress, f"{FIELD}.authorityHost")
    if vault is None or authority is None:
        return aiohttp.TCPConnector(ssl=config.ssl_context())
    vault.check_url(config.vault_url)  # aiohttp resolves no IP address, so those are checked now
    authority.check_url(config.authority_host)
    vault_host = urlsplit(config.vault_url).hostname or ""
    resolver = GuardedResolver({vault_host: vault}, default=authority)
    return aiohttp.TCPConnector(ssl=config.ssl_context(), resolver=resolver)


async def _client_secret(auth: ClientSecretAuth, credentials: Credentials) -> str:
    return await credential_text(credentials, auth.secret_ref, f"{FIELD}.auth.clientSecret.secretRef")


def _credential(
    config: AzureKeyVaultConfig,
    store: StoreContext,
    credentials: Credentials,
    client_secret: str,
    session: aiohttp.ClientSession,
) -> tuple[AsyncTokenCredential, str]:
    """The azure-identity credential for the store's auth block, and how messages name it."""
    auth = config.auth
    common: dict[str, Any] = {
        "transport": AioHttpTransport(session=session, session_owner=False),
        **PIPELINE_SETTINGS,
    }
    if config.authority_host:
        common["authority"] = config.authority_host
    if auth.client_secret is not None:
        return (
            ClientSecretCredential(config.tenant_id, auth.client_secret.client_id, client_secret, **common),
            f"the client secret of app {auth.client_secret.client_id!r}",
        )
    if auth.workload_identity is not None:
        workload = auth.workload_identity
        selector = workload.service_account_ref
        audiences = selector.audiences or [TOKEN_EXCHANGE_AUDIENCE]

        async def fetch_assertion() -> str:
            return await credentials.service_account_token(
                selector, f"{FIELD}.auth.workloadIdentity.serviceAccountRef", audiences
            )

        return (
            WorkloadIdentityCredential(fetch_assertion, config.tenant_id, workload.client_id, **common),
            f"the workload identity of app {workload.client_id!r} (ServiceAccount {selector.name!r})",
        )
    assert auth.managed_identity is not None
    if not store.may_use_operator_identity:  # the only path to the operator's own identity
        raise InvalidStoreConfig(f"{FIELD}.auth.managedIdentity: a ClusterSecretStore only")
    client_id = auth.managed_identity.client_id
    common.pop("authority", None)  # the operator's environment says where its identity's tokens come from
    return (
        ManagedIdentityCredential(client_id=client_id or None, **common),
        f"the managed identity {client_id!r}" if client_id else "the system-assigned managed identity",
    )
