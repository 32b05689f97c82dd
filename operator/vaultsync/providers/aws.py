"""The `aws` provider: AWS Secrets Manager through boto3 (Parameter Store: `awsparams.py`).

Everything AWS-specific lives here: the config block, the three ways to get an
identity (static keys from a Secret, web identity for a ServiceAccount, the
operator's own default chain for a ClusterSecretStore only), reading
`SecretString`/`SecretBinary` by VersionId or stage, batching reads with
BatchGetSecretValue, and converting botocore errors into vaultsync's. boto3 is
blocking, so its calls run on a small thread pool of this module and never on
the event loop. Throttling is retried here, with jittered backoff, because only
this module can tell AWS slowing us down from AWS failing.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self, TypeVar

import boto3
import botocore.session
from botocore import UNSIGNED
from botocore.config import Config
from botocore.credentials import CredentialResolver
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from botocore.parsers import ResponseParserError
from pydantic import ConfigDict, Field, field_validator, model_validator

from vaultsync.egress import EgressGuard, guard_for, run_guarded
from vaultsync.errors import (
    AuthenticationError,
    EgressRefused,
    InvalidStoreConfig,
    PermissionDenied,
    ProviderError,
    SecretNotFound,
    ThrottledError,
    VaultsyncError,
)
from vaultsync.origins import HTTP_SCHEMES, check_origin
from vaultsync.providers.base import (
    Audience,
    ConfigModel,
    Credentials,
    FindQuery,
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

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_secretsmanager.type_defs import SecretValueEntryTypeDef
    from mypy_boto3_sts.type_defs import CredentialsTypeDef

T = TypeVar("T")

FIELD = "spec.provider.aws"
STS_AUDIENCE = "sts.amazonaws.com"
BATCH_LIMIT = 20  # BatchGetSecretValue accepts at most 20 ids per call
LIST_PAGE_SIZE = 100  # ListSecrets answers at most 100 secrets a page
LIST_FILTER_VALUES = 10  # a ListSecrets name filter takes at most 10 names (prefixes)
THROTTLE_ATTEMPTS = 4
THROTTLE_BASE_DELAY = 0.2  # seconds; doubled per attempt, full jitter
REFRESH_MARGIN = 300.0  # renew temporary credentials this long before they expire

# AWS's ClientRequestToken, which becomes the VersionId, is 32-64 of these;
# stage labels (AWSCURRENT, AWSPREVIOUS, custom) are short names.
REGION_PATTERN = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"
REGION_MAX_LENGTH = 64
ROLE_ARN_MAX_LENGTH = 2048
_VERSION_ID = re.compile(r"[A-Za-z0-9-]{32,64}")
# What ListSecrets can filter by name (AWS's own name alphabet; an ARN is described instead).
_LISTED_NAME = re.compile(r"[A-Za-z0-9/_+=.@-]{1,512}")
_THROTTLING_CODES = frozenset(
    {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"}
)
_AUTH_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "ExpiredToken",
        "ExpiredTokenException",
        "AccessDenied",
        "AccessDeniedException",
        "InvalidIdentityToken",
    }
)
_DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException"})

# botocore logs every response body at DEBUG, secret values included; never let it.
logging.getLogger("botocore.parsers").setLevel(logging.INFO)

_BOTO_CONFIG = Config(
    connect_timeout=5,
    read_timeout=15,
    retries={"total_max_attempts": 1},  # retrying is decided here, not in botocore
    max_pool_connections=8,
)


class AwsStaticKeys(ConfigModel):
    access_key_id: SecretKeySelector = Field(description="The key of a Secret holding the access key id.")
    secret_access_key: SecretKeySelector = Field(
        description="The key of a Secret holding the secret access key."
    )


class AwsServiceAccount(ServiceAccountSelector):
    audiences: list[Audience] = audiences_field(f"Audiences of the requested token; default {STS_AUDIENCE}.")


class AwsWebIdentity(ConfigModel):
    service_account_ref: AwsServiceAccount = Field(description="The ServiceAccount whose token is requested.")
    role_arn: str = Field(
        min_length=1,
        max_length=ROLE_ARN_MAX_LENGTH,
        description="The IAM role to assume, arn:aws:iam::<account>:role/<name>.",
    )


class AwsAuth(ConfigModel):
    model_config = ConfigDict(
        json_schema_extra=crd(
            exactly_one("aws.auth", ("secretRef", "jwt"), "(or be omitted in a ClusterSecretStore)")
        )
    )

    secret_ref: AwsStaticKeys | None = Field(
        default=None, description="A static access key held in a Kubernetes Secret."
    )
    jwt: AwsWebIdentity | None = Field(
        default=None,
        description="Web identity: a token of a ServiceAccount exchanged for a role with "
        "AssumeRoleWithWebIdentity.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.secret_ref is None) == (self.jwt is None):
            raise ValueError("set exactly one of secretRef, jwt")
        return self


class AwsConfig(ConfigModel):
    """AWS Secrets Manager or Systems Manager Parameter Store."""

    # A namespaced store never borrows the operator's identity: no default credential chain.
    namespaced_rules: ClassVar[tuple[dict[str, str], ...]] = (
        cel(
            "has(self.auth)",
            "aws.auth is required in a SecretStore: only a ClusterSecretStore may use the "
            "operator's own AWS credentials",
            field_path=".auth",
            reason="FieldValueRequired",
        ),
    )

    # The region becomes part of AWS's host names (secretsmanager.<region>.amazonaws.com).
    region: str = Field(
        min_length=1,
        max_length=REGION_MAX_LENGTH,
        pattern=REGION_PATTERN,
        description="AWS region, e.g. us-east-1.",
    )
    # External Secrets Operator's field and values.
    service: Literal["SecretsManager", "ParameterStore"] = Field(
        default="SecretsManager",
        description="The AWS service read: SecretsManager (default) or ParameterStore (Systems "
        "Manager parameters; SecureString decrypted).",
    )
    # Also used for STS, so one override reaches a local emulator.
    endpoint: str = origin_field(
        "aws.endpoint",
        HTTP_SCHEMES,
        optional=True,
        description="Overrides the service's (Secrets Manager or Systems Manager) and STS "
        "endpoints (a VPC endpoint, a local emulator); empty uses AWS's own. An origin only: "
        "scheme://host[:port], no path, query or fragment.",
    )
    auth: AwsAuth | None = Field(
        default=None,
        description="Exactly one method. Omitted, a ClusterSecretStore uses the operator's own "
        "default credential chain; a SecretStore must set it.",
    )

    @field_validator("endpoint")
    @classmethod
    def _origin(cls, endpoint: str) -> str:
        return check_origin(endpoint, HTTP_SCHEMES) if endpoint else ""

    @property
    def endpoint_field(self) -> str:
        """The field that says where requests go, for refusals to name."""
        return f"{FIELD}.endpoint" if self.endpoint else f"{FIELD}.region"


@dataclass(frozen=True, repr=False)  # repr=False: never print keys
class AwsKeys:
    """An identity's keys, and when they expire (None: never)."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None = None
    expires_at: float | None = None


KeySource = Callable[[], Awaitable[AwsKeys | None]]
"""Fetches a store's keys; None means botocore's default chain (the operator's identity)."""


class AwsProvider(Provider):
    name: ClassVar[str] = "aws"
    config_model: ClassVar[type[ConfigModel]] = AwsConfig

    async def new_client(
        self, config: ConfigModel, store: StoreContext, credentials: Credentials
    ) -> SecretsClient:
        assert isinstance(config, AwsConfig)
        auth = config.auth
        threads = StoreThreads("aws")
        if auth is None:
            if not store.may_use_operator_identity:
                raise InvalidStoreConfig(
                    f"{FIELD}.auth: required for a {store.kind}: without it the operator's own "
                    "AWS identity would be used, which only a ClusterSecretStore may do; "
                    "set auth.secretRef or auth.jwt"
                )
            keys: KeySource = _default_chain
            hint = "check the operator's own AWS credentials (environment, web identity, profile)"
        elif auth.secret_ref is not None:
            keys = functools.partial(_static_keys, auth.secret_ref, credentials)
            hint = (
                f"check that the Secret named by {FIELD}.auth.secretRef holds an active access "
                "key id and its secret access key"
            )
        else:
            assert auth.jwt is not None
            keys = functools.partial(_web_identity, config, auth.jwt, store, credentials, threads)
            hint = (
                f"check {FIELD}.auth.jwt.roleArn and that the role's trust policy accepts "
                "this ServiceAccount's tokens"
            )
        client = _client_class(config)(config, store, keys, hint, threads)
        try:
            await client.connect()
        except BaseException:
            threads.close()
            raise
        return client


def _client_class(config: AwsConfig) -> type[AwsClient]:
    if config.service == "SecretsManager":
        return AwsClient
    # Loaded only by stores that read Parameter Store; it builds on AwsClient, below.
    from vaultsync.providers.awsparams import ParameterStoreClient

    return ParameterStoreClient


async def _default_chain() -> None:
    return None  # botocore finds and refreshes the operator's credentials itself


async def _static_keys(keys: AwsStaticKeys, credentials: Credentials) -> AwsKeys:
    key_id = await credential_text(credentials, keys.access_key_id, f"{FIELD}.auth.secretRef.accessKeyId")
    secret = await credential_text(
        credentials, keys.secret_access_key, f"{FIELD}.auth.secretRef.secretAccessKey"
    )
    return AwsKeys(key_id, secret)


async def _web_identity(
    config: AwsConfig,
    jwt: AwsWebIdentity,
    store: StoreContext,
    credentials: Credentials,
    threads: StoreThreads,
) -> AwsKeys:
    """A ServiceAccount token exchanged with STS for the role's temporary credentials."""
    token = await credentials.service_account_token(
        jwt.service_account_ref,
        f"{FIELD}.auth.jwt.serviceAccountRef",
        audiences=jwt.service_account_ref.audiences or [STS_AUDIENCE],
    )
    session_name = f"vaultsync-{store.namespace or 'cluster'}-{store.name}"
    try:
        creds = await _in_thread(
            threads,
            functools.partial(
                _assume_role_with_web_identity,
                config,
                jwt.role_arn,
                re.sub(r"[^\w+=,.@-]", "-", session_name)[:64],
                token,
            ),
            guard_for(store.denied_egress, config.endpoint_field),
        )
    except ClientError as exc:
        code = _code(exc)
        if _is_throttling(exc) or code == "IDPCommunicationError":
            raise ProviderError(f"{store}: STS is unavailable ({code}); retrying") from None
        raise AuthenticationError(
            f"{store}: STS refused to assume {FIELD}.auth.jwt.roleArn for the "
            f"ServiceAccount's token ({code}): check that the role exists, that its trust "
            "policy allows sts:AssumeRoleWithWebIdentity for this ServiceAccount and "
            "audience, and that the cluster's OIDC issuer is an IAM identity provider"
        ) from None
    except BotoCoreError as exc:
        raise _egress_refusal(exc) or ProviderError(f"{store}: cannot reach STS: {exc}") from None
    except ResponseParserError:  # a server that is not STS; its answer is not repeated
        raise ProviderError(f"{store}: the STS endpoint's answer is not an STS response") from None
    return AwsKeys(
        creds["AccessKeyId"],
        creds["SecretAccessKey"],
        creds["SessionToken"],
        creds["Expiration"].timestamp(),
    )


def _assume_role_with_web_identity(
    config: AwsConfig, role_arn: str, session_name: str, token: str
) -> CredentialsTypeDef:
    # The call is unsigned: the token is the proof, so no credentials are looked up.
    sts = _isolated_session(config, None).client(
        "sts",
        endpoint_url=config.endpoint or None,
        config=_BOTO_CONFIG.merge(Config(signature_version=UNSIGNED)),
    )
    _refuse_redirects(sts, config.endpoint_field)
    try:
        return sts.assume_role_with_web_identity(
            RoleArn=role_arn, RoleSessionName=session_name, WebIdentityToken=token
        )["Credentials"]
    finally:
        sts.close()


def _isolated_session(config: AwsConfig, keys: AwsKeys | None) -> boto3.session.Session:
    """A session that can sign only with `keys`, and with nothing when they are None.

    Its credential resolver has no providers, so it can never reach botocore's default chain
    (environment, shared files, profiles, container and instance metadata), which is the
    operator's own identity: boto3 reads an empty key as "none given" and would look there.
    """
    core = botocore.session.Session()
    core.register_component("credential_provider", CredentialResolver(providers=[]))
    if keys is not None:
        if not (keys.access_key_id and keys.secret_access_key):
            raise InvalidStoreConfig(f"{FIELD}.auth: the access key id or secret access key is empty")
        core.set_credentials(keys.access_key_id, keys.secret_access_key, keys.session_token)
    return boto3.session.Session(botocore_session=core, region_name=config.region)


def _secretsmanager(config: AwsConfig, keys: AwsKeys | None) -> SecretsManagerClient:
    client: SecretsManagerClient = service_client(config, keys, "secretsmanager")
    return client


def service_client(config: AwsConfig, keys: AwsKeys | None, service: str) -> Any:
    """A boto3 client (building one reads model files, so this runs off the event loop).

    `keys` None is the operator's default chain, which `new_client` allows a ClusterSecretStore only.
    """
    if keys is None:
        session = boto3.session.Session(region_name=config.region)
    else:
        session = _isolated_session(config, keys)
    client = session.client(service, endpoint_url=config.endpoint or None, config=_BOTO_CONFIG)  # type: ignore[call-overload]
    _refuse_redirects(client, config.endpoint_field)
    return client


class AwsClient(SecretsClient):
    """One store's Secrets Manager client; renews temporary credentials before they expire."""

    service_name: ClassVar[str] = "AWS Secrets Manager"
    # How errors name a remote value, which codes say it is missing, what reading it needs.
    value_noun: ClassVar[str] = "secret"
    not_found_codes: ClassVar[frozenset[str]] = frozenset({"ResourceNotFoundException"})
    read_permission: ClassVar[str] = (
        "secretsmanager:GetSecretValue on it (and kms:Decrypt on its key, if it uses a customer managed key)"
    )

    def __init__(
        self, config: AwsConfig, store: StoreContext, keys: KeySource, hint: str, threads: StoreThreads
    ) -> None:
        self.threads = threads
        self._config = config
        self._store = store
        self._keys = keys
        self._auth_hint = hint
        self._sm: SecretsManagerClient | None = None
        self._expires_at: float | None = None
        self._lock = asyncio.Lock()
        self._batch_allowed = True
        self._listing_allowed = True
        # Learnt costs of change detection: pages of the whole listing (0 = not tried yet,
        # inf = more than was worth it) and pages per filtered call.
        self._full_pages = 0.0
        self._pages_per_filter = 1.0
        self._egress = guard_for(store.denied_egress, config.endpoint_field)

    async def connect(self) -> None:
        """Fetches the store's keys and builds a client with them.

        A client being replaced may still serve calls in flight, so it is dropped, not closed.
        """
        keys = await self._keys()
        if keys is None and not self._store.may_use_operator_identity:  # never the default chain
            raise InvalidStoreConfig(f"{FIELD}.auth: required for a {self._store.kind}")
        self._sm = await _in_thread(
            self.threads, functools.partial(self._build, self._config, keys), self._egress
        )
        self._expires_at = keys.expires_at if keys else None

    @staticmethod
    def _build(config: AwsConfig, keys: AwsKeys | None) -> Any:
        """The boto3 client of the service (a subclass reads another)."""
        return _secretsmanager(config, keys)

    async def _client(self) -> SecretsManagerClient:
        async with self._lock:
            if self._expires_at is not None and self._expires_at - time.time() < REFRESH_MARGIN:
                await self.connect()
            assert self._sm is not None
            return self._sm

    async def get_secret(self, ref: RemoteRef) -> RemoteValue:
        sm = await self._client()
        kwargs: dict[str, str] = {"SecretId": ref.key}
        if ref.version:
            kwargs["VersionId" if _VERSION_ID.fullmatch(ref.version) else "VersionStage"] = ref.version
        try:
            response = await self._call(functools.partial(sm.get_secret_value, **kwargs))
        except (ClientError, BotoCoreError, ResponseParserError) as exc:
            raise self._convert(exc, ref) from None
        return _remote_value(response)

    async def get_secrets(
        self, refs: Sequence[RemoteRef]
    ) -> Mapping[RemoteRef, RemoteValue | VaultsyncError]:
        """Unpinned keys in BatchGetSecretValue calls of 20; pinned keys one by one."""
        latest = list(dict.fromkeys(r.key for r in refs if not r.version))
        chunks = [latest[i : i + BATCH_LIMIT] for i in range(0, len(latest), BATCH_LIMIT)]
        by_key: dict[str, RemoteValue | VaultsyncError] = {}
        for found in await asyncio.gather(*(self._batch(chunk) for chunk in chunks)):
            by_key.update(found)
        pinned = [r for r in dict.fromkeys(refs) if r.version]
        single = await super().get_secrets(pinned)
        return {r: single[r] if r.version else by_key[r.key] for r in refs}

    async def _batch(self, keys: list[str]) -> dict[str, RemoteValue | VaultsyncError]:
        if not self._batch_allowed:
            return await self._one_by_one(keys)
        sm = await self._client()
        try:
            response = await self._call(functools.partial(sm.batch_get_secret_value, SecretIdList=keys))
        except (ClientError, BotoCoreError, ResponseParserError) as exc:
            if isinstance(exc, ClientError) and _code(exc) in _DENIED_CODES:
                # A least-privilege policy may grant GetSecretValue but not the batch call.
                self._batch_allowed = False
                return await self._one_by_one(keys)
            return dict.fromkeys(keys, self._convert(exc, None))
        out: dict[str, RemoteValue | VaultsyncError] = {}
        wanted = set(keys)
        for entry in response.get("SecretValues", []):
            for name in (entry.get("Name"), entry.get("ARN")):
                if name in wanted:
                    out[name] = _remote_value(entry)
        for failed in response.get("Errors", []):
            key = failed.get("SecretId", "")
            if key in wanted:
                out[key] = self._convert_code(
                    failed.get("ErrorCode", ""), failed.get("Message", ""), RemoteRef(key)
                )
        # Ids AWS answered under another form (a partial ARN, say) are read one by one.
        missing = [k for k in keys if k not in out]
        out.update(await self._one_by_one(missing))
        return out

    async def _one_by_one(self, keys: list[str]) -> dict[str, RemoteValue | VaultsyncError]:
        refs = [RemoteRef(k) for k in keys]
        results = await super().get_secrets(refs)
        return {r.key: results[r] for r in refs}

    async def stamps(
        self, due: Sequence[RemoteRef], known: Sequence[RemoteRef]
    ) -> Mapping[RemoteRef, str | None] | None:
        """The VersionId each ref's stage points at (AWSCURRENT unless pinned), from the
        cheapest of: the whole ListSecrets listing (100 secrets a page, every key answered),
        ListSecrets filtered by name (10 names a call), DescribeSecret per due key."""
        refs = list(dict.fromkeys([*due, *known]))
        stages = await self._stages([r.key for r in refs], [r.key for r in due])
        out: dict[RemoteRef, str | None] = {}
        for ref in refs:
            if ref.key in stages:
                out[ref] = _stamp(ref, stages[ref.key])
        return out

    async def _stages(self, keys: list[str], due: list[str]) -> dict[str, dict[str, list[str]]]:
        """`SecretVersionsToStages` of the keys the chosen way answers ({} for a missing key)."""
        keys, due = list(dict.fromkeys(keys)), list(dict.fromkeys(due))
        names = [k for k in keys if _LISTED_NAME.fullmatch(k)]
        described = [k for k in due if not _LISTED_NAME.fullmatch(k)]
        per_cycle = {  # calls per refresh cycle of every key held, by way
            "describe": float(len(keys)),
            "filtered": math.ceil(len(names) / LIST_FILTER_VALUES) * self._pages_per_filter,
        }
        if self._listing_allowed and self._full_pages <= min(per_cycle.values()):
            listed = await self._list_all(cap=int(min(per_cycle.values())))
            if listed is not None:
                return {k: listed.get(k, {}) for k in keys}
        if self._listing_allowed and names and per_cycle["filtered"] < per_cycle["describe"]:
            listed = await self._list_filtered(names)
            if listed is not None:
                found = {k: listed.get(k, {}) for k in names}
                return found | await self._describe([k for k in described if k not in found])
        return await self._describe(due)

    async def _list_all(self, cap: int) -> dict[str, dict[str, list[str]]] | None:
        """The whole listing, or None once it passes `cap` pages without its end (learnt)."""
        found: dict[str, dict[str, list[str]]] = {}
        pages = await self._list_pages([], found, max(1, cap) if self._full_pages == 0 else None)
        if pages is None:
            self._full_pages = math.inf
            return None
        self._full_pages = float(pages)
        return found

    async def _list_filtered(self, names: list[str]) -> dict[str, dict[str, list[str]]] | None:
        found: dict[str, dict[str, list[str]]] = {}
        chunks = [names[i : i + LIST_FILTER_VALUES] for i in range(0, len(names), LIST_FILTER_VALUES)]
        counts = await asyncio.gather(
            *(self._list_pages([{"Key": "name", "Values": c}], found, None) for c in chunks)
        )
        if any(c is None for c in counts):
            return None
        self._pages_per_filter = sum(c or 0 for c in counts) / len(chunks)
        return found

    async def _list_pages(
        self, filters: list[Any], found: dict[str, dict[str, list[str]]], cap: int | None
    ) -> int | None:
        """Pages of ListSecrets into `found` (by name and by ARN); how many, or None when
        refused or cut at `cap`. A secret scheduled for deletion is not listed: it is read,
        and the read says so."""
        token, pages = "", 0
        while True:
            if cap is not None and pages >= cap:
                return None
            try:
                page = await self._list_page(filters, token)
            except ClientError as exc:
                if _code(exc) in _DENIED_CODES:  # a policy without ListSecrets: describe instead
                    self._listing_allowed = False
                    return None
                raise
            pages += 1
            for entry in page.get("SecretList", []):
                stages = {k: list(v) for k, v in entry.get("SecretVersionsToStages", {}).items()}
                for name in (entry.get("Name"), entry.get("ARN")):
                    if name:
                        found[name] = stages
            token = page.get("NextToken", "")
            if not token:
                return pages

    async def _describe(self, keys: list[str]) -> dict[str, dict[str, list[str]]]:
        sm = await self._client()

        async def one(key: str) -> tuple[str, dict[str, list[str]] | None]:
            try:
                response = await self._call(functools.partial(sm.describe_secret, SecretId=key))
            except ClientError as exc:
                return key, {} if _code(exc) == "ResourceNotFoundException" else None
            if response.get("DeletedDate"):
                return key, {}
            return key, {k: list(v) for k, v in response.get("VersionIdsToStages", {}).items()}

        answers = await asyncio.gather(*(one(k) for k in keys))
        return {k: v for k, v in answers if v is not None}

    async def _list_page(self, filters: list[Any], token: str) -> Any:
        """One page of ListSecrets (`token` "" for the first)."""
        sm = await self._client()
        kwargs: dict[str, Any] = {"MaxResults": LIST_PAGE_SIZE, "Filters": filters}
        if token:
            kwargs["NextToken"] = token
        return await self._call(functools.partial(sm.list_secrets, **kwargs))

    async def list_keys(self, query: FindQuery, limit: int) -> list[str]:
        """ListSecrets, filtered by AWS by name prefix and tags, then checked here: AWS
        matches a name filter on words of the name and tag keys and values independently,
        so a pair is only a pair once checked against the secret's own tags."""
        filters: list[Any] = [{"Key": "name", "Values": [query.path]}] if query.path else []
        for key, value in query.tags:
            filters += [{"Key": "tag-key", "Values": [key]}, {"Key": "tag-value", "Values": [value]}]
        wanted = dict(query.tags)
        names: list[str] = []
        token = ""
        while len(names) <= limit:
            try:
                page = await self._list_page(filters, token)
            except ClientError as exc:
                if _code(exc) in _DENIED_CODES:  # authenticated: the policy lacks ListSecrets
                    raise PermissionDenied(
                        f"{self._store}: AWS denied ListSecrets ({_code(exc)}): find needs "
                        "secretsmanager:ListSecrets in the store's IAM policy"
                    ) from None
                raise self._convert(exc, None) from None
            except (BotoCoreError, ResponseParserError) as exc:
                raise self._convert(exc, None) from None
            for entry in page.get("SecretList", []):
                name = entry.get("Name", "")
                tags = {t.get("Key"): t.get("Value", "") for t in entry.get("Tags", [])}
                if name.startswith(query.path) and all(tags.get(k) == v for k, v in wanted.items()):
                    names.append(name)
            token = page.get("NextToken", "")
            if not token:
                break
        return names[: limit + 1]

    async def validate(self) -> None:
        """One listing call: AWS authenticates before it authorizes, so even
        AccessDenied proves the credentials; no extra permission is needed."""
        client = await self._client()
        try:
            await self._call(self._smallest_listing(client))
        except ClientError as exc:
            if _code(exc) not in _DENIED_CODES:
                raise self._convert(exc, None) from None
        except (BotoCoreError, ResponseParserError) as exc:
            raise self._convert(exc, None) from None

    def _smallest_listing(self, client: Any) -> Callable[[], Any]:
        """The cheapest call that proves the credentials (`validate`)."""
        return functools.partial(client.list_secrets, MaxResults=1)

    async def close(self) -> None:
        if self._sm is not None:
            self._sm.close()
        self.threads.close()

    async def _call(self, call: Callable[[], T]) -> T:
        """Runs `call` off the event loop, retrying throttling with full-jitter backoff."""
        attempt = 0
        while True:
            self.count_call()
            try:
                return await _in_thread(self.threads, call, self._egress)
            except ClientError as exc:
                attempt += 1
                if _is_throttling(exc):
                    self.count_throttled()
                if not _is_throttling(exc) or attempt >= THROTTLE_ATTEMPTS:
                    raise
            delay = THROTTLE_BASE_DELAY * 2 ** (attempt - 1)
            await asyncio.sleep(random.uniform(0, delay))  # noqa: S311

    def _convert(
        self, exc: ClientError | BotoCoreError | ResponseParserError, ref: RemoteRef | None
    ) -> VaultsyncError:
        if (refused := _egress_refusal(exc)) is not None:
            return refused
        if isinstance(exc, ClientError):
            if _is_throttling(exc):
                return ThrottledError(
                    f"{self._store}: {self.service_name} is throttling requests "
                    f"({_code(exc)}) after {THROTTLE_ATTEMPTS} attempts; retrying later",
                    retry_after=THROTTLE_BASE_DELAY * 2 ** (THROTTLE_ATTEMPTS - 1),
                )
            error = exc.response.get("Error", {})
            return self._convert_code(_code(exc), error.get("Message", ""), ref)
        where = self._config.endpoint or f"region {self._config.region}"
        if isinstance(exc, ResponseParserError):  # not an AWS answer; its body is not repeated
            return ProviderError(f"{self._store}: {where} did not answer as {self.service_name}")
        if isinstance(exc, NoCredentialsError):
            return AuthenticationError(f"{self._store}: no AWS credentials were found: {self._auth_hint}")
        return ProviderError(f"{self._store}: cannot reach {self.service_name} at {where}: {exc}")

    def _convert_code(self, code: str, message: str, ref: RemoteRef | None) -> VaultsyncError:
        """An AWS error code (from an exception or a batch entry) as a vaultsync error."""
        what = f"{self.value_noun} {ref.key!r}" if ref else "the store"
        if ref and ref.version:
            what += f" at version {ref.version!r}"
        region = self._config.region
        deleted = code == "InvalidRequestException" and "delet" in message.lower()
        if code in self.not_found_codes or deleted:
            gone = "is marked for deletion" if deleted else "does not exist"
            return SecretNotFound(f"{self._store}: {what} {gone} in {self.service_name} ({region})")
        if code in _THROTTLING_CODES:
            return ThrottledError(f"{self._store}: {self.service_name} throttled {what} ({code})")
        if code in _DENIED_CODES and ref is not None:
            # The identity was authenticated; this one secret is outside its policy.
            return PermissionDenied(
                f"{self._store}: AWS denied reading {what} ({code}): check that the store's "
                f"IAM policy allows {self.read_permission}"
            )
        if code in _AUTH_CODES or code in ("401", "403"):  # an error body botocore cannot read
            return AuthenticationError(
                f"{self._store}: {self.service_name} rejected the credentials ({code}) "
                f"in region {region}: {self._auth_hint}"
            )
        return ProviderError(f"{self._store}: {self.service_name} failed on {what}: {code}: {message[:200]}")


def _remote_value(entry: Mapping[str, Any] | SecretValueEntryTypeDef) -> RemoteValue:
    if "SecretString" in entry:
        value = entry["SecretString"].encode()
    else:
        value = bytes(entry.get("SecretBinary", b""))
    version = entry.get("VersionId", "")
    return RemoteValue(value, version, stamp=version)


def _stamp(ref: RemoteRef, stages: Mapping[str, list[str]]) -> str | None:
    """The VersionId a read of `ref` would return now; None if it has none."""
    if ref.version and _VERSION_ID.fullmatch(ref.version):
        return ref.version if ref.version in stages else None
    stage = ref.version or "AWSCURRENT"
    return next((v for v, s in stages.items() if stage in s), None)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _is_throttling(exc: ClientError) -> bool:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return _code(exc) in _THROTTLING_CODES or status == 429


def _egress_refusal(exc: Exception) -> EgressRefused | None:
    """botocore wraps whatever its HTTP layer raises; a refusal of the egress guard is unwrapped."""
    error = getattr(exc, "kwargs", {}).get("error")
    return error if isinstance(error, EgressRefused) else None


def _refuse_redirects(client: Any, field: str) -> None:
    """botocore follows no redirect, but would parse a redirect's body as the answer; an answer
    asking for a redirect is refused by name instead, before any parsing."""

    def check(response_dict: Mapping[str, Any], **_: Any) -> None:
        status = int(response_dict.get("status_code") or 0)
        if 300 <= status < 400:
            raise EgressRefused(
                f"{field}: the endpoint answered with a redirect (HTTP {status}); "
                "vaultsync does not follow redirects"
            )

    client.meta.events.register("before-parse", check)


async def _in_thread(threads: StoreThreads, call: Callable[[], T], egress: EgressGuard | None) -> T:
    """The one way boto3 is called: on the store's own threads, under its egress guard."""
    return await threads.run(run_guarded, egress, call)
