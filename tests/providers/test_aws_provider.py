"""What only the AWS provider does, against moto's server: binary values, stages,
batching, throttling, web identity and the refusal to lend a namespace the operator's identity.

Calls are counted, and throttling provoked, by a proxy between the client and moto
(`recording_proxy.py`), so botocore parses real HTTP responses throughout.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.providers.backends.aws import (
    SERVICE_ACCOUNT,
    SERVICE_ACCOUNT_TOKEN,
    WRONG_SECRET,
    AwsBackend,
    secret_ref,
)
from tests.providers.backends.base import unique_key
from tests.providers.backends.credentials import StaticCredentials, TokenRequest
from tests.providers.recording_proxy import CannedReply, RecordingProxy, recording_proxy
from tests.providers.test_contract import assert_no_leak, secret
from vaultsync.errors import (
    AuthenticationError,
    InvalidStoreConfig,
    ProviderError,
    SecretNotFound,
    ThrottledError,
)
from vaultsync.providers import PROVIDERS
from vaultsync.providers import aws as aws_provider
from vaultsync.providers.base import (
    RemoteRef,
    RemoteValue,
    SecretsClient,
    StoreContext,
)

NAMESPACED = StoreContext(kind="SecretStore", name="team-store", namespace="team-a")
CLUSTER = StoreContext(kind="ClusterSecretStore", name="platform", namespace=None)
BATCH = "secretsmanager.BatchGetSecretValue"
GET = "secretsmanager.GetSecretValue"


def json_error(status: int, code: str) -> CannedReply:
    """An AWS JSON-protocol error reply, as Secrets Manager sends it."""
    body = json.dumps({"__type": code, "message": f"{code} from the test proxy"}).encode()
    headers = (("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", code))
    return CannedReply(status, body, headers)


THROTTLING = json_error(400, "ThrottlingException")
TOO_MANY_REQUESTS = CannedReply(429, b"{}", (("Content-Type", "application/x-amz-json-1.1"),))
ACCESS_DENIED = json_error(400, "AccessDeniedException")
STS_INVALID_TOKEN = CannedReply(
    400,
    b"<ErrorResponse><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code>"
    b"<Message>Incorrect token audience</Message></Error><RequestId>1</RequestId></ErrorResponse>",
    (("Content-Type", "text/xml"),),
)


async def open_client(
    aws: AwsBackend,
    config: Mapping[str, Any] | None = None,
    store: StoreContext = NAMESPACED,
    credentials: StaticCredentials | None = None,
) -> SecretsClient:
    provider = PROVIDERS["aws"]
    parsed = provider.parse_config(config if config is not None else aws.provider_config())
    return await provider.new_client(parsed, store, credentials or aws.credentials())


@asynccontextmanager
async def connected(
    aws: AwsBackend,
    config: Mapping[str, Any] | None = None,
    store: StoreContext = NAMESPACED,
    credentials: StaticCredentials | None = None,
) -> AsyncIterator[SecretsClient]:
    client = await open_client(aws, config, store, credentials)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def proxy(aws: AwsBackend) -> Iterator[RecordingProxy]:
    with recording_proxy(aws.endpoint) as started:
        yield started


async def test_secret_binary_is_returned_as_its_bytes(aws: AwsBackend) -> None:
    key, value = unique_key(), b"\x00\xff\x10binary" + secret().encode()
    version = aws.write_binary(key, value)
    async with connected(aws) as client:
        assert await client.get_secret(RemoteRef(key)) == RemoteValue(value, version)


async def test_stages_pin_the_version_they_point_at(aws: AwsBackend) -> None:
    key, old, new = unique_key(), secret(), secret()
    old_version, new_version = aws.write(key, old), aws.write(key, new)
    aws.secretsmanager.update_secret_version_stage(
        SecretId=key, VersionStage="blue", MoveToVersionId=old_version
    )
    async with connected(aws) as client:
        previous = RemoteRef(key, "AWSPREVIOUS")
        assert await client.get_secret(previous) == RemoteValue(old.encode(), old_version)
        assert await client.stamps([previous], []) == {previous: old_version}
        current = await client.get_secret(RemoteRef(key, "AWSCURRENT"))
        assert current == RemoteValue(new.encode(), new_version)
        blue = await client.get_secret(RemoteRef(key, "blue"))
        assert blue == RemoteValue(old.encode(), old_version)


@pytest.mark.parametrize("version", ["NOSUCHSTAGE", "0f0e0d0c-0b0a-4000-8000-000000000000"])
async def test_unknown_stage_or_version_id_is_secret_not_found(aws: AwsBackend, version: str) -> None:
    key = unique_key()
    aws.write(key, secret())
    async with connected(aws) as client:
        with pytest.raises(SecretNotFound) as info:
            await client.get_secret(RemoteRef(key, version))
        assert version in info.value.message
        unknown = RemoteRef(key, "NOSUCHSTAGE")
        assert await client.stamps([unknown], []) == {unknown: None}


async def test_secret_marked_for_deletion_is_secret_not_found(aws: AwsBackend) -> None:
    key, value = unique_key(), secret()
    aws.write(key, value)
    aws.secretsmanager.delete_secret(SecretId=key, RecoveryWindowInDays=7)
    async with connected(aws) as client:
        with pytest.raises(SecretNotFound, match="marked for deletion") as info:
            await client.get_secret(RemoteRef(key))
        batched = (await client.get_secrets([RemoteRef(key)]))[RemoteRef(key)]
    assert isinstance(batched, SecretNotFound)
    assert_no_leak(info.value, value)


@pytest.mark.parametrize("count", [1, 20, 21, 41])
async def test_many_keys_take_one_batch_call_per_20(
    aws: AwsBackend, proxy: RecordingProxy, count: int
) -> None:
    values = {unique_key("batch"): secret() for _ in range(count)}
    with aws.authentication_off():  # moto's IAM checks make each write slow
        for key, value in values.items():
            aws.write(key, value)
    async with connected(aws, aws.provider_config(proxy.url)) as client:
        proxy.reset()
        results = await client.get_secrets([RemoteRef(key) for key in values])
    assert proxy.calls(BATCH) == math.ceil(count / 20)
    assert proxy.calls(GET) == 0
    for key, value in values.items():
        got = results[RemoteRef(key)]
        assert isinstance(got, RemoteValue) and got.value == value.encode()


async def test_pinned_keys_in_a_batch_are_read_one_by_one(aws: AwsBackend, proxy: RecordingProxy) -> None:
    keys = [unique_key("batch") for _ in range(3)]
    versions = [aws.write(key, secret()) for key in keys]
    refs = [RemoteRef(key) for key in keys] + [
        RemoteRef(keys[0], versions[0]),
        RemoteRef(keys[1], "AWSCURRENT"),
    ]
    async with connected(aws, aws.provider_config(proxy.url)) as client:
        proxy.reset()
        results = await client.get_secrets(refs)
    assert all(isinstance(result, RemoteValue) for result in results.values())
    assert (proxy.calls(BATCH), proxy.calls(GET)) == (1, 2)


async def test_batch_call_denied_by_policy_falls_back_to_single_reads(
    aws: AwsBackend, proxy: RecordingProxy
) -> None:
    values = {unique_key("batch"): secret() for _ in range(3)}
    for key, value in values.items():
        aws.write(key, value)
    async with connected(aws, aws.provider_config(proxy.url)) as client:
        proxy.reset()
        proxy.refuse_next(1, ACCESS_DENIED)
        results = await client.get_secrets([RemoteRef(key) for key in values])
        await client.get_secrets([RemoteRef(key) for key in values])  # no second batch attempt
    assert (proxy.calls(BATCH), proxy.calls(GET)) == (1, 6)
    assert all(isinstance(result, RemoteValue) for result in results.values())


@pytest.mark.parametrize("reply", [THROTTLING, TOO_MANY_REQUESTS], ids=["code", "http-429"])
async def test_throttling_is_retried_with_backoff_then_succeeds(
    aws: AwsBackend, proxy: RecordingProxy, reply: CannedReply
) -> None:
    key, value = unique_key(), secret()
    aws.write(key, value)
    async with connected(aws, aws.provider_config(proxy.url)) as client:
        proxy.reset()
        proxy.refuse_next(aws_provider.THROTTLE_ATTEMPTS - 1, reply)
        got = await client.get_secret(RemoteRef(key))
    assert got.value == value.encode()
    assert proxy.calls(GET) == aws_provider.THROTTLE_ATTEMPTS


@pytest.mark.parametrize("reply", [THROTTLING, TOO_MANY_REQUESTS], ids=["code", "http-429"])
async def test_throttling_that_persists_is_throttled_error_never_a_missing_key(
    aws: AwsBackend, proxy: RecordingProxy, reply: CannedReply
) -> None:
    key = unique_key()
    aws.write(key, secret())
    attempts = aws_provider.THROTTLE_ATTEMPTS
    async with connected(aws, aws.provider_config(proxy.url)) as client:
        proxy.reset()
        proxy.refuse_next(attempts, reply)
        with pytest.raises(ThrottledError) as info:
            await client.get_secret(RemoteRef(key))
        proxy.refuse_next(attempts, reply)
        batched = await client.get_secrets([RemoteRef(key), RemoteRef(unique_key())])
    assert info.value.retry_after is not None and info.value.retry_after > 0
    assert (proxy.calls(GET), proxy.calls(BATCH)) == (attempts, attempts)
    assert all(isinstance(result, ThrottledError) for result in batched.values())


async def test_validate_accepts_credentials_that_may_not_list_secrets(
    aws: AwsBackend, proxy: RecordingProxy
) -> None:
    async with connected(aws, aws.provider_config(proxy.url)) as client:
        proxy.refuse_next(1, ACCESS_DENIED)
        await client.validate()  # AWS authenticated the key before it denied the call


async def test_a_secret_outside_the_policy_is_a_provider_error_not_a_credential_failure(
    aws: AwsBackend, proxy: RecordingProxy
) -> None:
    key = unique_key()
    aws.write(key, secret())
    async with connected(aws, aws.provider_config(proxy.url)) as client:
        proxy.refuse_next(1, ACCESS_DENIED)
        with pytest.raises(ProviderError) as info:
            await client.get_secret(RemoteRef(key))
    assert not isinstance(info.value, AuthenticationError)
    assert key in info.value.message
    assert "secretsmanager:GetSecretValue" in info.value.message


async def test_right_key_id_with_a_wrong_secret_is_an_authentication_error(
    aws: AwsBackend,
) -> None:
    config = {**aws.provider_config(), "auth": secret_ref("aws-creds-wrong-secret")}
    async with connected(aws, config) as client:
        with pytest.raises(AuthenticationError, match=r"spec\.provider\.aws\.auth\.secretRef"):
            await client.validate()
        with pytest.raises(AuthenticationError) as info:
            await client.get_secret(RemoteRef(unique_key()))
    assert_no_leak(info.value, WRONG_SECRET, aws.access_key[1])


async def test_namespaced_store_without_auth_is_refused_naming_the_field(
    aws: AwsBackend,
) -> None:
    config = {"region": "us-east-1", "endpoint": aws.endpoint}
    with pytest.raises(InvalidStoreConfig) as info:
        async with connected(aws, config, store=NAMESPACED):
            pass
    assert "spec.provider.aws.auth" in info.value.message
    assert "ClusterSecretStore" in info.value.message


async def test_cluster_store_without_auth_uses_the_operators_default_chain(
    aws: AwsBackend, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key, value = unique_key(), secret()
    aws.write(key, value)
    key_id, secret_key = aws.access_key
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret_key)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    config = {"region": "us-east-1", "endpoint": aws.endpoint}
    async with connected(aws, config, store=CLUSTER, credentials=StaticCredentials()) as client:
        await client.validate()
        assert (await client.get_secret(RemoteRef(key))).value == value.encode()


async def test_web_identity_exchanges_a_service_account_token_for_the_role(
    aws: AwsBackend, proxy: RecordingProxy
) -> None:
    key, value = unique_key(), secret()
    aws.write(key, value)
    credentials = aws.credentials()
    config = {**aws.web_identity_config(), "endpoint": proxy.url}
    with aws.authentication_off():  # moto cannot check the unsigned STS call
        client = await open_client(aws, config, credentials=credentials)
    try:
        # Authentication is on again: moto accepts only the role's temporary credentials.
        assert (await client.get_secret(RemoteRef(key))).value == value.encode()
    finally:
        await client.close()
    assert proxy.calls("AssumeRoleWithWebIdentity") == 1
    assert credentials.requests == [TokenRequest(SERVICE_ACCOUNT, ("sts.amazonaws.com",))]


async def test_web_identity_credentials_are_renewed_before_they_expire(
    aws: AwsBackend, proxy: RecordingProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aws_provider, "REFRESH_MARGIN", 7200.0)  # moto's last an hour
    credentials = aws.credentials()
    config = {**aws.web_identity_config(), "endpoint": proxy.url}
    with aws.authentication_off():
        async with connected(aws, config, credentials=credentials) as client:
            await client.validate()
            await client.validate()
    assert proxy.calls("AssumeRoleWithWebIdentity") == 3  # connect, then before each call
    assert len(credentials.requests) == 3


async def test_token_refused_by_sts_is_an_authentication_error_naming_the_role_field(
    aws: AwsBackend, proxy: RecordingProxy
) -> None:
    config = {**aws.web_identity_config(), "endpoint": proxy.url}
    proxy.refuse_next(1, STS_INVALID_TOKEN)
    with pytest.raises(AuthenticationError) as info:
        async with connected(aws, config):
            pass
    assert "spec.provider.aws.auth.jwt.roleArn" in info.value.message
    assert "InvalidIdentityToken" in info.value.message
    assert_no_leak(info.value, SERVICE_ACCOUNT_TOKEN)


@pytest.mark.parametrize(
    ("auth", "field"),
    [
        ({}, "spec.provider.aws.auth: Value error, set exactly one of secretRef, jwt"),
        (
            {**secret_ref("a"), "jwt": {"serviceAccountRef": {"name": "a"}, "roleArn": "r"}},
            "spec.provider.aws.auth: Value error, set exactly one of secretRef, jwt",
        ),
        ({"jwt": {"serviceAccountRef": {"name": "a"}}}, "spec.provider.aws.auth.jwt.roleArn"),
    ],
)
def test_auth_block_errors_name_the_field(auth: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidStoreConfig) as info:
        PROVIDERS["aws"].parse_config({"region": "us-east-1", "auth": auth})
    assert field in info.value.message


async def test_no_value_reaches_the_log_even_at_debug_level(
    aws: AwsBackend, caplog: pytest.LogCaptureFixture
) -> None:
    key, value = unique_key(), secret()
    aws.write(key, value)
    caplog.set_level(logging.DEBUG)
    async with connected(aws) as client:
        assert (await client.get_secret(RemoteRef(key))).value == value.encode()
        await client.get_secrets([RemoteRef(key), RemoteRef(unique_key())])
    assert caplog.records, "nothing was logged: the test proves nothing"
    assert value not in caplog.text
