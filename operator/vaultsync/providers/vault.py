"""The `vault` provider: HashiCorp Vault and OpenBao KV secrets engines, through hvac.

Vault hands out short-lived tokens, so this module owns their life cycle: one
login per client, the token kept and renewed at two thirds of its lease, a new
login only when renewal is refused or the token was revoked. A read therefore
costs one request, and asking whether a KV v2 secret changed costs one metadata
request, never a login.

A secret's value is its whole data map as JSON, so the core's `property` and
`dataFrom.extract` work on Vault secrets exactly as on a JSON string elsewhere.
hvac is blocking; every call runs in a worker thread. hvac and requests
exceptions are converted here and go no further.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

import hvac
import hvac.exceptions
import requests
from pydantic import ConfigDict, Field, field_validator, model_validator

from vaultsync.constants import SECRET_SIZE_LIMIT
from vaultsync.egress import EgressGuard, guard_for, run_guarded
from vaultsync.errors import (
    AuthenticationError,
    EgressRefused,
    InvalidSpec,
    InvalidStoreConfig,
    PermissionDenied,
    ProviderError,
    SecretNotFound,
    SecretTooLarge,
    ThrottledError,
    VaultsyncError,
)
from vaultsync.origins import HTTP_SCHEMES, check_origin, origin_of
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
from vaultsync.providers.threads import StoreThreads

FIELD = "spec.provider.vault"
# The audience of every ServiceAccount token sent to Vault unless the store names others;
# the Vault role must expect it (`audience=vault`). Never the API server's own audience.
VAULT_AUDIENCE = "vault"
PATH_MAX_LENGTH = 1024  # mount paths, role names and ids, namespaces
# Renew a token once this fraction of its lease has passed (Vault Agent does the same).
RENEW_AT_FRACTION = 2 / 3
REQUEST_TIMEOUT_SECONDS = 15
# Vault's own reason, quoted in our messages to make them actionable, is cut to this length.
VAULT_REASON_LIMIT = 200
# A response body is read at most this far: a value that fits a Secret (1 MiB), JSON-escaped.
RESPONSE_LIMIT = 4 * SECRET_SIZE_LIMIT
RESPONSE_CHUNK = 64 * 1024


class ResponseTooLarge(requests.RequestException):
    """A response body over RESPONSE_LIMIT, refused while it was being read."""

    def __init__(self, size: int) -> None:
        super().__init__(f"response of {size} bytes or more")
        self.size = size


def _capped_body(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
    """A response hook: reads the body in chunks and stops past RESPONSE_LIMIT, so an
    oversized value is never held whole (requests would otherwise read it all at once)."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > RESPONSE_LIMIT:
        response.close()
        raise ResponseTooLarge(int(declared))
    chunks, size = [], 0
    for chunk in response.iter_content(RESPONSE_CHUNK):
        size += len(chunk)
        if size > RESPONSE_LIMIT:
            response.close()
            raise ResponseTooLarge(size)
        chunks.append(chunk)
    response._content = b"".join(chunks)
    return response


T = TypeVar("T")


class TokenAuth(ConfigModel):
    """A token kept in a Kubernetes Secret."""

    secret_ref: SecretKeySelector = Field(description="The key of a Secret holding the token.")


class AppRoleAuth(ConfigModel):
    """AppRole login: the role id in the spec, the secret id in a Kubernetes Secret."""

    path: str = Field(
        default="approle",
        min_length=1,
        max_length=PATH_MAX_LENGTH,
        description="Mount path of the AppRole auth method.",
    )
    role_id: str = Field(min_length=1, max_length=PATH_MAX_LENGTH, description="The role id.")
    secret_ref: SecretKeySelector = Field(description="The key of a Secret holding the secret id.")


class VaultServiceAccount(ServiceAccountSelector):
    audiences: list[Audience] = audiences_field(
        f"Audiences of the requested token; default {VAULT_AUDIENCE}. One the "
        "Kubernetes API server accepts is refused."
    )


class KubernetesAuth(ConfigModel):
    """Kubernetes login with a token requested for a ServiceAccount (TokenRequest).

    Without `serviceAccountRef`, a ClusterSecretStore logs in as the operator's own
    ServiceAccount (a token requested for the Vault audience, never its mounted API token);
    a namespaced SecretStore must name one of its own.
    """

    mount_path: str = Field(
        default="kubernetes",
        min_length=1,
        max_length=PATH_MAX_LENGTH,
        description="Mount path of the Kubernetes auth method.",
    )
    role: str = Field(min_length=1, max_length=PATH_MAX_LENGTH, description="The Vault role to log in as.")
    service_account_ref: VaultServiceAccount | None = Field(
        default=None, description="The ServiceAccount whose token is requested."
    )


class VaultAuth(ConfigModel):
    """Exactly one login method."""

    model_config = ConfigDict(
        json_schema_extra=crd(exactly_one("vault.auth", ("token", "appRole", "kubernetes")))
    )

    token: TokenAuth | None = Field(default=None, description="A Vault token held in a Kubernetes Secret.")
    app_role: AppRoleAuth | None = Field(
        default=None, description="AppRole login with a role id and a secret id."
    )
    kubernetes: KubernetesAuth | None = Field(
        default=None,
        description="Kubernetes auth with a ServiceAccount token. Without serviceAccountRef (a "
        "ClusterSecretStore only), the operator's own ServiceAccount, by a token requested for "
        f"the audience {VAULT_AUDIENCE}.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> VaultAuth:
        chosen = [m for m in (self.token, self.app_role, self.kubernetes) if m is not None]
        if len(chosen) != 1:
            raise ValueError("set exactly one of token, appRole, kubernetes")
        return self


class VaultConfig(ConfigModel):
    """HashiCorp Vault or OpenBao, KV secrets engine."""

    # A namespaced store never borrows the operator's identity: no login as its ServiceAccount.
    namespaced_rules: ClassVar[tuple[dict[str, str], ...]] = (
        cel(
            "has(self.auth)",
            "vault.auth is required in a SecretStore: only a ClusterSecretStore may use the "
            "operator's own Vault token",
            field_path=".auth",
            reason="FieldValueRequired",
        ),
        cel(
            "!has(self.auth) || !has(self.auth.kubernetes) || has(self.auth.kubernetes.serviceAccountRef)",
            "vault.auth.kubernetes.serviceAccountRef is required in a SecretStore: only a "
            "ClusterSecretStore may log in as the operator's own ServiceAccount",
            field_path=".auth.kubernetes.serviceAccountRef",
            reason="FieldValueRequired",
        ),
    )

    server: str = origin_field(
        "vault.server",
        HTTP_SCHEMES,
        optional=False,
        description="Address of the server, e.g. https://vault:8200. An origin only: "
        "scheme://host[:port], no path, query or fragment.",
    )
    path: str = Field(
        default="secret",
        min_length=1,
        max_length=PATH_MAX_LENGTH,
        description="Mount path of the KV secrets engine.",
    )
    version: Literal["v1", "v2"] = Field(default="v2", description="Version of the KV secrets engine.")
    namespace: str = Field(
        default="",
        max_length=PATH_MAX_LENGTH,
        description="Vault Enterprise / OpenBao namespace; empty for none.",
    )
    ca_bundle: str = Field(
        default="",
        description="Base64-encoded PEM CA certificates that sign the server's certificate; empty "
        "trusts the system's CAs.",
        json_schema_extra=crd(format="byte"),
    )
    # Required here; optional in the CRD so that a SecretStore without it gets the namespaced
    # rule's message above (the API server checks no CEL rule of an object missing a required
    # field). A ClusterSecretStore without it is refused by the operator: vaultsync never
    # reads a Vault token from its own environment.
    auth: VaultAuth = Field(
        description="Exactly one method. Required: vaultsync never uses a Vault token of its own.",
        json_schema_extra=crd(crd_required=False),
    )

    @field_validator("server")
    @classmethod
    def _origin(cls, server: str) -> str:
        return check_origin(server, HTTP_SCHEMES)

    @field_validator("path")
    @classmethod
    def _mount_path(cls, path: str) -> str:
        path = path.strip("/")
        if not path:
            raise ValueError("must name the KV mount, e.g. secret")
        return path

    @field_validator("ca_bundle")
    @classmethod
    def _base64_pem(cls, ca_bundle: str) -> str:
        if ca_bundle and b"-----BEGIN CERTIFICATE-----" not in _decode_ca_bundle(ca_bundle):
            raise ValueError("must be base64-encoded PEM certificates")
        return ca_bundle


def _decode_ca_bundle(ca_bundle: str) -> bytes:
    try:
        return base64.b64decode(ca_bundle, validate=True)
    except (binascii.Error, ValueError):
        return b""


@dataclass(frozen=True)
class Lease:
    """A Vault token and when to renew it; `ttl` 0 means it never expires (e.g. a root token)."""

    token: str = field(repr=False)
    ttl: float
    renewable: bool
    obtained_at: float

    def renewal_due(self, now: float) -> bool:
        return self.ttl > 0 and now >= self.obtained_at + self.ttl * RENEW_AT_FRACTION


class VaultClient(SecretsClient):
    """Reads one KV mount with a cached, renewed token."""

    def __init__(
        self,
        config: VaultConfig,
        store: StoreContext,
        credentials: Credentials,
        ca_file: str | None,
    ) -> None:
        self._config = config
        self._store = store
        self._credentials = credentials
        self._ca_file = ca_file
        self._egress = guard_for(store.denied_egress, f"{FIELD}.server")
        self._threads = StoreThreads("vault")
        session = requests.Session()
        session.verify = ca_file if ca_file else True  # hvac takes a given session's verify
        for scheme in ("http://", "https://"):
            session.mount(scheme, SameOriginAdapter(config.server))
        self._hvac = hvac.Client(
            url=config.server,
            token="",  # never hvac's fallback to VAULT_TOKEN / ~/.vault-token
            verify=session.verify,
            timeout=REQUEST_TIMEOUT_SECONDS,
            namespace=config.namespace or None,
            session=session,
        )
        self._hvac.adapter.session.hooks["response"].append(_capped_body)
        self._lease: Lease | None = None
        self._auth_lock = asyncio.Lock()
        # Credentials sent to Vault, scrubbed from any text Vault sends back.
        self._sent_secrets: set[str] = set()
        self.logins = 0  # how many times this client logged in; observable for tests and metrics

    # -- reading ---------------------------------------------------------------

    async def get_secret(self, ref: RemoteRef) -> RemoteValue:
        key = _clean_key(ref.key)
        what = f"key {key!r} in mount {self._config.path!r}"
        if self._config.version == "v1":
            if ref.version:
                raise InvalidSpec(
                    f"remoteRef.version: {what} is a KV v1 mount, which has no versions; "
                    "remove the version pin or use a KV v2 mount"
                )
            response = await self._call(
                what,
                lambda: self._hvac.secrets.kv.v1.read_secret(path=key, mount_point=self._config.path),
            )
            return RemoteValue(_data_as_json(response["data"]), "")
        version = _version_number(ref, what)
        response = await self._call(
            what + (f" at version {version}" if version else ""),
            lambda: self._hvac.secrets.kv.v2.read_secret_version(
                path=key,
                version=version,
                mount_point=self._config.path,
                raise_on_deleted_version=True,
            ),
        )
        body = response["data"]
        meta = body["metadata"]
        read = str(meta["version"])
        return RemoteValue(_data_as_json(body["data"]), read, f"{read}@{meta.get('created_time', '')}")

    async def stamps(
        self, due: Sequence[RemoteRef], known: Sequence[RemoteRef]
    ) -> Mapping[RemoteRef, str | None] | None:
        """KV v2: one metadata request per due key (Vault has no batch, so change detection
        saves bytes, not calls). KV v1 has no metadata: None, its values are read."""
        if self._config.version == "v1":
            return None
        answers = await asyncio.gather(*(self._stamp(ref) for ref in due), return_exceptions=True)
        out: dict[RemoteRef, str | None] = {}
        for ref, answer in zip(due, answers, strict=True):
            if isinstance(answer, SecretNotFound):
                out[ref] = None
            elif isinstance(answer, str):
                out[ref] = answer
        return out

    async def _stamp(self, ref: RemoteRef) -> str:
        """`<version>@<its created_time>`: a key deleted and written again restarts at
        version 1, with another time."""
        key = _clean_key(ref.key)
        what = f"key {key!r} in mount {self._config.path!r}"
        pinned = _version_number(ref, what)
        response = await self._call(
            f"the metadata of {what}",
            lambda: self._hvac.secrets.kv.v2.read_secret_metadata(path=key, mount_point=self._config.path),
        )
        meta = response["data"]
        version = str(pinned or meta["current_version"])
        state = meta.get("versions", {}).get(version, {})
        if not state or state.get("deletion_time") or state.get("destroyed"):
            raise SecretNotFound(f"{self._store}: version {version} of {what} is deleted")
        return f"{version}@{state.get('created_time', '')}"

    async def list_keys(self, query: FindQuery, limit: int) -> list[str]:
        """LIST from the folder `query.path` down, one request per folder; with tags, the
        KV v2 custom metadata of each secret found (one request each, as External Secrets
        Operator does: Vault cannot filter by metadata). KV v1 has no metadata."""
        if query.tags and self._config.version == "v1":
            raise ListingUnsupported(
                f"mount {self._config.path!r} is KV v1, which has no custom metadata to find tags in"
            )
        kv = self._hvac.secrets.kv.v1 if self._config.version == "v1" else self._hvac.secrets.kv.v2
        mount = self._config.path
        names: list[str] = []
        folders = [_clean_key(query.path)]
        while folders and len(names) <= limit:
            folder = folders.pop(0)
            try:
                listed = await self._call(
                    f"the list of folder {folder!r} in mount {mount!r}",
                    functools.partial(kv.list_secrets, path=folder, mount_point=mount),
                )
            except SecretNotFound:
                continue  # an empty or missing folder: Vault answers 404
            except PermissionDenied:
                under = "metadata/" if self._config.version == "v2" else ""
                raise PermissionDenied(
                    f"{self._store}: Vault refused to list folder {folder!r} of mount {mount!r}: "
                    f"find needs the list capability on {mount}/{under}<path>/* in the role's policy"
                ) from None
            for entry in listed["data"]["keys"]:
                full = f"{folder}/{entry}" if folder else entry
                if entry.endswith("/"):
                    folders.append(full.rstrip("/"))
                else:
                    names.append(full)
        if not query.tags:
            return names[: limit + 1]
        if len(names) > limit:  # the tags cannot be checked without reading every one
            raise InvalidSpec(
                f"more than {limit} secrets under path {query.path!r} of mount {mount!r} to read "
                "the custom metadata of; narrow path"
            )
        wanted = dict(query.tags)
        metadata = await asyncio.gather(*(self._custom_metadata(n) for n in names))
        return [n for n, meta in zip(names, metadata, strict=True) if _has_tags(meta, wanted)]

    async def _custom_metadata(self, key: str) -> Mapping[str, Any] | None:
        what = f"the metadata of key {key!r} in mount {self._config.path!r}"
        try:
            response = await self._call(
                what,
                functools.partial(
                    self._hvac.secrets.kv.v2.read_secret_metadata, path=key, mount_point=self._config.path
                ),
            )
        except SecretNotFound:
            return None  # deleted since the listing
        meta: Mapping[str, Any] | None = response["data"].get("custom_metadata")
        return meta

    async def validate(self) -> None:
        """Logs in (or renews) and asks Vault who the token is: proves server, TLS and auth."""
        await self._call("a lookup of the store's own token", self._hvac.auth.token.lookup_self)

    async def close(self) -> None:
        lease, self._lease = self._lease, None
        if lease is not None and self._config.auth.token is None:
            # Tokens this client created by logging in are revoked; a user's own token is not.
            # Bounded: a close follows a deadline's cancellation too, and must not hang.
            with contextlib.suppress(
                hvac.exceptions.VaultError, requests.RequestException, EgressRefused, TimeoutError
            ):
                await asyncio.wait_for(
                    self._thread(self._hvac.auth.token.revoke_self), REQUEST_TIMEOUT_SECONDS
                )
        self._hvac.adapter.close()  # closes pooled sockets: no I/O to wait for
        self._threads.close()
        if self._ca_file:
            os.unlink(self._ca_file)
            self._ca_file = None

    # -- the token -------------------------------------------------------------

    async def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Runs one hvac call with a valid token; one new login if Vault revoked the token."""
        used = await self._ensure_token()
        try:
            return await self._blocking(what, fn)
        except AuthenticationError as exc:
            if not await self._replace_refused(used):
                # The token is fine, its policy does not allow this read: the caller's problem,
                # never a reason to drop (and revoke) a token other ExternalSecrets use.
                raise PermissionDenied(exc.message) from None
        try:
            return await self._blocking(what, fn)
        except AuthenticationError as exc:  # refused with a fresh token: the policy's doing
            raise PermissionDenied(exc.message) from None

    async def _thread(self, fn: Callable[[], T]) -> T:
        """The one way hvac is called: on the store's own threads, under its egress guard."""
        egress: EgressGuard | None = self._egress
        return await self._threads.run(run_guarded, egress, fn)

    async def _blocking(self, what: str, fn: Callable[[], T], *, login: bool = False) -> T:
        self.count_call()
        try:
            return await self._thread(fn)
        except (hvac.exceptions.VaultError, requests.RequestException) as exc:
            error = self._convert(exc, what, login=login)
            if isinstance(error, ThrottledError):
                self.count_throttled()
            raise error from None

    async def _ensure_token(self) -> Lease:
        """The lease to use: the cached one, renewed when due, or a new login."""
        async with self._auth_lock:
            lease = self._lease
            now = time.monotonic()
            if lease is not None:
                if not lease.renewal_due(now):
                    return lease
                renewed = await self._renew(lease, now) if lease.renewable else None
                if renewed is not None:
                    self._lease = renewed
                    return renewed
            return await self._new_login()

    async def _replace_refused(self, used: Lease) -> bool:
        """After Vault refused `used`: True once a working token is in place, False when `used`
        is still valid (the refusal was its policy's). Concurrent refusals share one login."""
        async with self._auth_lock:
            if self._lease is not used:
                return True  # another caller has already replaced it
            try:
                await self._thread(self._hvac.auth.token.lookup_self)
                return False
            except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized):
                await self._new_login()
                return True
            except (hvac.exceptions.VaultError, requests.RequestException) as exc:
                # Cannot tell whether the token still works: transient, keep the client.
                raise ProviderError(
                    f"{self._store}: Vault at {self._config.server} refused a read and then "
                    f"failed to say whether the store's token is valid ({type(exc).__name__})"
                ) from None

    async def _new_login(self) -> Lease:
        """Logs in; the caller holds the auth lock."""
        self._lease = None
        self._hvac.token = ""
        lease = await self._login()
        self._hvac.token = lease.token
        self._lease = lease
        self.logins += 1
        return lease

    async def _renew(self, lease: Lease, now: float) -> Lease | None:
        """A renewed lease, or None when Vault refuses or the token reached its max TTL."""
        try:
            response = await self._thread(self._hvac.auth.token.renew_self)
        except (hvac.exceptions.VaultError, requests.RequestException):
            return None
        ttl = float(response["auth"]["lease_duration"])
        if ttl < lease.ttl * (1 - RENEW_AT_FRACTION):
            return None  # capped by max TTL: a fresh login lasts longer
        return Lease(lease.token, ttl, bool(response["auth"]["renewable"]), now)

    async def _login(self) -> Lease:
        auth = self._config.auth
        auth_field = f"{FIELD}.auth"
        self._sent_secrets.clear()  # only the credentials of the current login are kept
        if auth.token is not None:
            token_field = f"{auth_field}.token.secretRef"
            token = await credential_text(self._credentials, auth.token.secret_ref, token_field)
            return await self._lookup_token(token, f"the token in {token_field}")
        if auth.app_role is not None:
            role = auth.app_role
            secret_id = await credential_text(
                self._credentials, role.secret_ref, f"{auth_field}.appRole.secretRef"
            )
            self._sent_secrets.add(secret_id)
            return await self._login_with(
                f"AppRole login at auth/{role.path.strip('/')} (role id from {auth_field}.appRole)",
                lambda: self._hvac.auth.approle.login(
                    role_id=role.role_id,
                    secret_id=secret_id,
                    use_token=False,
                    mount_point=role.path.strip("/"),
                ),
            )
        assert auth.kubernetes is not None
        kube = auth.kubernetes
        account_field = f"{auth_field}.kubernetes.serviceAccountRef"
        if kube.service_account_ref is None:
            jwt = await self._credentials.operator_token(account_field, [VAULT_AUDIENCE])
        else:
            jwt = await self._credentials.service_account_token(
                kube.service_account_ref, account_field, [VAULT_AUDIENCE]
            )
        self._sent_secrets.add(jwt)
        return await self._login_with(
            f"Kubernetes login at auth/{kube.mount_path.strip('/')} as role {kube.role!r}",
            lambda: self._hvac.auth.kubernetes.login(
                role=kube.role,
                jwt=jwt,
                use_token=False,
                mount_point=kube.mount_path.strip("/"),
            ),
        )

    async def _login_with(self, what: str, fn: Callable[[], Mapping[str, Any]]) -> Lease:
        response = await self._blocking(what, fn, login=True)
        auth = response["auth"]
        return Lease(
            auth["client_token"],
            float(auth["lease_duration"]),
            bool(auth["renewable"]),
            time.monotonic(),
        )

    async def _lookup_token(self, token: str, source: str) -> Lease:
        self._sent_secrets.add(token)
        self._hvac.token = token
        response = await self._blocking(f"a lookup of {source}", self._hvac.auth.token.lookup_self)
        data = response["data"]
        return Lease(token, float(data.get("ttl") or 0), bool(data.get("renewable")), time.monotonic())

    # -- errors ----------------------------------------------------------------

    def _convert(self, exc: Exception, what: str, *, login: bool = False) -> VaultsyncError:
        """The vaultsync error for an hvac/requests failure, naming the store and the server.

        A login refused as a bad request (AppRole answers 400 to a wrong secret id) is a
        refusal of the credentials, like a 403.
        """
        vault = f"{self._store}: Vault at {self._config.server}"
        if isinstance(exc, ResponseTooLarge):
            return SecretTooLarge(
                f"{vault}: the response for {what} is {exc.size} bytes or more, over the "
                f"{RESPONSE_LIMIT} byte limit for a value that must fit a Kubernetes Secret; "
                "it was not read further"
            )
        if isinstance(exc, requests.exceptions.SSLError):
            return ProviderError(
                f"{vault}: TLS failed for {what}: check that {FIELD}.caBundle holds the CA "
                "that signed the server's certificate"
            )
        if isinstance(exc, requests.RequestException):
            return ProviderError(
                f"{self._store}: cannot reach Vault at {self._config.server} for {what} "
                f"({type(exc).__name__}); retrying with backoff"
            )
        assert isinstance(exc, hvac.exceptions.VaultError)
        said = self._vault_reason(exc)
        refused = hvac.exceptions.Forbidden | hvac.exceptions.Unauthorized
        if isinstance(exc, refused) or (login and isinstance(exc, hvac.exceptions.InvalidRequest)):
            data_path = "data/" if self._config.version == "v2" else ""
            return AuthenticationError(
                f"{vault} refused {what}{said}: check {FIELD}.auth and that the Vault policy "
                f"of its role grants read on {self._config.path}/{data_path}<key>"
            )
        if isinstance(exc, hvac.exceptions.InvalidPath):
            return SecretNotFound(f"{vault}: {what} does not exist")
        if isinstance(exc, hvac.exceptions.RateLimitExceeded):
            return ThrottledError(f"{vault} is rate-limiting {what}")
        if isinstance(exc, hvac.exceptions.InvalidRequest):
            return ProviderError(f"{vault} rejected {what} as invalid{said}")
        return ProviderError(f"{vault} failed on {what} ({type(exc).__name__}){said}")

    def _vault_reason(self, exc: hvac.exceptions.VaultError) -> str:
        """Vault's own words (e.g. "permission denied"), minus anything we sent it."""
        reason = ", ".join(str(e) for e in exc.errors or [] if e)
        reason = _scrub(reason, self._sent_secrets)[:VAULT_REASON_LIMIT]
        return f" (Vault says: {reason})" if reason else ""


class SameOriginAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter, refusing any request to another origin than the configured server's.

    requests follows redirects by default and sends hvac's `X-Vault-Token` header along to
    wherever the server points; a redirect away from the server is refused here, before any
    connection to its target, while a redirect within the server's origin still works.
    """

    def __init__(self, server: str) -> None:
        super().__init__()
        self._origin = origin_of(server)

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        target = origin_of(request.url or "")
        if target != self._origin:
            raise EgressRefused(
                f"{FIELD}.server: the server redirected to {target}, another origin; vaultsync "
                f"does not follow a redirect away from {FIELD}.server"
            )
        return super().send(request, *args, **kwargs)


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


def _has_tags(metadata: Mapping[str, Any] | None, wanted: Mapping[str, str]) -> bool:
    return metadata is not None and all(metadata.get(k) == v for k, v in wanted.items())


def _clean_key(key: str) -> str:
    return key.strip("/")


def _version_number(ref: RemoteRef, what: str) -> int | None:
    if not ref.version:
        return None
    if not ref.version.isdigit() or int(ref.version) < 1:
        raise InvalidSpec(
            f"remoteRef.version: {what} is in a KV v2 mount, whose versions are "
            f"numbers from 1; got {ref.version!r}"
        )
    return int(ref.version)


def _data_as_json(data: Mapping[str, Any] | None) -> bytes:
    return json.dumps(data or {}, separators=(",", ":")).encode()


class VaultProvider(Provider):
    name: ClassVar[str] = "vault"
    config_model: ClassVar[type[ConfigModel]] = VaultConfig

    async def new_client(
        self, config: ConfigModel, store: StoreContext, credentials: Credentials
    ) -> SecretsClient:
        assert isinstance(config, VaultConfig)
        kube = config.auth.kubernetes
        borrows_identity = kube is not None and kube.service_account_ref is None
        if borrows_identity and not store.may_use_operator_identity:
            raise InvalidStoreConfig(
                f"{FIELD}.auth.kubernetes.serviceAccountRef: required in a namespaced "
                f"{store}; only a ClusterSecretStore may log in as the operator's own "
                "ServiceAccount"
            )
        ca_file = await asyncio.to_thread(_write_ca_file, config.ca_bundle)
        client = VaultClient(config, store, credentials, ca_file)
        try:
            await client.validate()
        except BaseException:
            await client.close()
            raise
        return client


def _write_ca_file(ca_bundle: str) -> str | None:
    """requests verifies against a file path, so the bundle goes to a private temp file."""
    if not ca_bundle:
        return None
    fd, path = tempfile.mkstemp(prefix="vaultsync-ca-", suffix=".pem")
    with os.fdopen(fd, "wb") as out:
        out.write(_decode_ca_bundle(ca_bundle))
    return path
