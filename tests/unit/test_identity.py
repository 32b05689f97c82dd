"""A namespaced store never runs on the operator's identity, and a refused login is retried sparingly.

The pure parts: credential text from a Secret (empty, blank, undecodable, not UTF-8 are refused,
naming the field), the AWS session that cannot reach botocore's default chain whatever the
environment holds, and the store cache that backs off after a refused login but keeps a client
when one key is denied.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
from botocore.exceptions import NoCredentialsError

from vaultsync.credentials import secret_key_bytes
from vaultsync.errors import (
    AuthenticationError,
    CredentialNotFound,
    InvalidStoreConfig,
    StoreLoginRefused,
    StoreNotReady,
)
from vaultsync.providers import aws as aws_provider
from vaultsync.providers.base import (
    ConfigModel,
    Credentials,
    Provider,
    RemoteRef,
    RemoteValue,
    SecretKeySelector,
    SecretsClient,
    ServiceAccountSelector,
    StoreContext,
    credential_text,
)
from vaultsync.stores import Stores

FIELD = "spec.provider.aws.auth.secretRef.accessKeyId"
SELECTOR = SecretKeySelector(name="aws-creds", key="id")
CANARY_KEY_ID = "AKIACANARYCANARY0001"


@dataclass
class OneSecret:
    """`Credentials` holding one Secret value (pure logic: no cluster involved)."""

    value: bytes

    async def secret_value(self, selector: SecretKeySelector, field: str) -> bytes:
        return self.value

    async def service_account_token(
        self, selector: ServiceAccountSelector, field: str, audiences: Sequence[str]
    ) -> str:
        raise AssertionError("not used")

    async def operator_token(self, field: str, audiences: Sequence[str]) -> str:
        raise AssertionError("not used")


def text_of(value: bytes) -> str:
    credentials: Credentials = OneSecret(value)
    return asyncio.run(credential_text(credentials, SELECTOR, FIELD))


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (b"", "is empty"),
        (b"   \n\t ", "is empty"),
        (b"\xff\xfe\xfd", "is not UTF-8 text"),
        (b"AKIA\x00EXAMPLE", "contains control characters"),
        (b"AKIA\r\nX-Injected: 1", "contains control characters"),
    ],
)
def test_unusable_credential_text_is_refused_naming_the_field(value: bytes, why: str) -> None:
    with pytest.raises(InvalidStoreConfig) as caught:
        text_of(value)
    assert caught.value.message == f"{FIELD}: key 'id' of Secret 'aws-creds' {why}"


def test_credential_text_is_stripped_of_surrounding_whitespace() -> None:
    assert text_of(b"  AKIAEXAMPLE\n") == "AKIAEXAMPLE"


def test_a_secret_key_that_is_not_base64_is_refused_naming_the_field() -> None:
    body = {"data": {"id": "not base64!"}}
    with pytest.raises(InvalidStoreConfig) as caught:
        secret_key_bytes(body, "team-a", SELECTOR, FIELD)
    assert caught.value.message == f"{FIELD}.key: key 'id' of Secret team-a/aws-creds is not base64"


def test_a_missing_secret_key_is_refused_naming_the_field() -> None:
    with pytest.raises(
        CredentialNotFound, match=r"accessKeyId\.key: Secret team-a/aws-creds has no key 'id'"
    ):
        secret_key_bytes({"data": {"other": "eA=="}}, "team-a", SELECTOR, FIELD)


def test_a_base64_secret_key_is_decoded() -> None:
    body = {"data": {"id": base64.b64encode(b"AKIAEXAMPLE").decode()}}
    assert secret_key_bytes(body, "team-a", SELECTOR, FIELD) == b"AKIAEXAMPLE"


@pytest.fixture
def canary_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The operator's own AWS identity, in every place botocore's default chain looks."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", CANARY_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "canary-secret")
    profile = f"[default]\naws_access_key_id = {CANARY_KEY_ID}\naws_secret_access_key = canary-secret\n"
    (tmp_path / "credentials").write_text(profile)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


CONFIG = aws_provider.AwsConfig(region="us-east-1", endpoint="http://127.0.0.1:9")


@pytest.mark.usefixtures("canary_environment")
def test_a_store_session_without_keys_cannot_find_the_operators_credentials() -> None:
    session = aws_provider._isolated_session(CONFIG, None)
    assert session.get_credentials() is None
    sm = session.client("secretsmanager", endpoint_url=CONFIG.endpoint)
    with pytest.raises(NoCredentialsError):  # raised before any request is sent
        sm.list_secrets()


@pytest.mark.usefixtures("canary_environment")
def test_a_store_session_signs_only_with_the_stores_keys() -> None:
    keys = aws_provider.AwsKeys("AKIASTORESTORESTORE1", "store-secret")
    credentials = aws_provider._isolated_session(CONFIG, keys).get_credentials()
    assert credentials is not None and credentials.access_key == "AKIASTORESTORESTORE1"


@pytest.mark.usefixtures("canary_environment")
@pytest.mark.parametrize(("key_id", "secret"), [("", "store-secret"), ("AKIASTORESTORESTORE1", "")])
def test_empty_keys_never_reach_a_session_even_past_the_providers_checks(key_id: str, secret: str) -> None:
    with pytest.raises(InvalidStoreConfig, match=r"spec\.provider\.aws\.auth"):
        aws_provider._secretsmanager(CONFIG, aws_provider.AwsKeys(key_id, secret))


# The store cache: a refused login backs off; nothing else drops a shared client. ----------


class Refusing(Provider):
    """A provider whose logins the vault refuses, counting them."""

    name: ClassVar[str] = "refusing"
    config_model: ClassVar[type[ConfigModel]] = ConfigModel
    logins = 0

    async def new_client(
        self, config: ConfigModel, store: StoreContext, credentials: Credentials
    ) -> SecretsClient:
        type(self).logins += 1
        raise AuthenticationError(f"{store}: the vault refused the login")


@dataclass
class Counted(SecretsClient):
    closed: list[bool] = field(default_factory=list)

    async def get_secret(self, ref: RemoteRef) -> RemoteValue:
        return RemoteValue(b"v")

    async def validate(self) -> None:
        return None

    async def close(self) -> None:
        self.closed.append(True)


class Accepting(Provider):
    name: ClassVar[str] = "accepting"
    config_model: ClassVar[type[ConfigModel]] = ConfigModel
    logins = 0

    async def new_client(
        self, config: ConfigModel, store: StoreContext, credentials: Credentials
    ) -> SecretsClient:
        type(self).logins += 1
        return Counted()


def cluster_store(provider: str) -> Mapping[str, Any]:
    return {
        "metadata": {"name": "shared", "uid": "u1", "generation": 1},
        "spec": {"provider": {provider: {}}},
    }


@pytest.fixture
def providers(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = {"refusing": Refusing(), "accepting": Accepting()}
    monkeypatch.setattr("vaultsync.storeclients.PROVIDERS", registry)
    Refusing.logins = Accepting.logins = 0


@pytest.mark.usefixtures("providers")
def test_a_refused_login_is_not_tried_again_by_every_caller_before_the_backoff() -> None:
    stores = Stores(kube=None)  # type: ignore[arg-type]  # the providers never reach the cluster

    async def scenario() -> list[BaseException | Any]:
        callers = [stores.client_for("ClusterSecretStore", cluster_store("refusing")) for _ in range(20)]
        return await asyncio.gather(*callers, return_exceptions=True)

    outcomes = asyncio.run(scenario())
    assert Refusing.logins == 1
    assert all(isinstance(o, StoreNotReady) for o in outcomes)
    assert isinstance(outcomes[0], StoreLoginRefused)
    assert all("refused the login" in str(o) for o in outcomes)


@pytest.mark.usefixtures("providers")
def test_a_refused_login_is_tried_again_once_the_backoff_has_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    stores = Stores(kube=None)  # type: ignore[arg-type]
    now = [1000.0]
    monkeypatch.setattr("vaultsync.storeclients.time.monotonic", lambda: now[0])

    async def attempt() -> None:
        with pytest.raises(StoreNotReady):
            await stores.client_for("ClusterSecretStore", cluster_store("refusing"))

    asyncio.run(attempt())
    now[0] += 4.9
    asyncio.run(attempt())
    assert Refusing.logins == 1
    now[0] += 0.2  # past the first backoff (5 s)
    asyncio.run(attempt())
    assert Refusing.logins == 2
    now[0] += 9.9  # the second backoff is twice as long
    asyncio.run(attempt())
    assert Refusing.logins == 2


@pytest.mark.usefixtures("providers")
def test_invalidate_drops_a_shared_client_once_and_backs_off_before_the_next_login(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stores = Stores(kube=None)  # type: ignore[arg-type]
    now = [1000.0]
    monkeypatch.setattr("vaultsync.storeclients.time.monotonic", lambda: now[0])

    async def scenario() -> tuple[Counted, Counted]:
        first = await stores.client_for("ClusterSecretStore", cluster_store("accepting"))
        # Many ExternalSecrets saw the same refusal: the client is closed once.
        await asyncio.gather(*(stores.invalidate(first) for _ in range(5)))
        with pytest.raises(StoreNotReady, match="refused the store's credentials"):
            await stores.client_for("ClusterSecretStore", cluster_store("accepting"))
        now[0] += 5.1
        second = await stores.client_for("ClusterSecretStore", cluster_store("accepting"))
        assert isinstance(first.client, Counted) and isinstance(second.client, Counted)
        return first.client, second.client

    first, second = asyncio.run(scenario())
    assert first.closed == [True] and second.closed == []
    assert Accepting.logins == 2
