"""What only Parameter Store (`aws.service: ParameterStore`) does, against moto's server:
SecureString decrypted, GetParameters in tens, versions pinned, change detection by
DescribeParameters, `find` by path, and the AWS store's identity rules unchanged.

Calls are counted by the proxy between the client and moto (`recording_proxy.py`).
The contract suite (`test_contract.py`, `test_change_detection.py`) runs against this
backend too (`backends/awsparams.py`).
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import pytest

from tests.providers.backends.aws import SERVICE_ACCOUNT
from tests.providers.backends.awsparams import ParameterStoreBackend
from tests.providers.backends.base import unique_key
from tests.providers.conftest import Backends
from tests.providers.recording_proxy import CannedReply, RecordingProxy, recording_proxy
from tests.providers.test_contract import assert_no_leak, secret
from vaultsync.errors import EgressRefused, InvalidStoreConfig, SecretNotFound
from vaultsync.providers import PROVIDERS
from vaultsync.providers.awsparams import ParameterStoreClient
from vaultsync.providers.base import RemoteRef, RemoteValue, SecretsClient, StoreContext

NAMESPACED = StoreContext(kind="SecretStore", name="team-store", namespace="team-a")
GET_PARAMETERS = "AmazonSSM.GetParameters"
GET_PARAMETER = "AmazonSSM.GetParameter"
DESCRIBE = "AmazonSSM.DescribeParameters"
JSON = "application/x-amz-json-1.1"


@pytest.fixture(scope="session")
def ssm(backends: Backends) -> ParameterStoreBackend:
    return cast(ParameterStoreBackend, backends.get("awsparams"))


@pytest.fixture
def proxy(ssm: ParameterStoreBackend) -> Iterator[RecordingProxy]:
    with recording_proxy(ssm.endpoint) as started:
        yield started


@asynccontextmanager
async def connected(
    ssm: ParameterStoreBackend, config: Mapping[str, Any] | None = None, store: StoreContext = NAMESPACED
) -> AsyncIterator[SecretsClient]:
    provider = PROVIDERS["aws"]
    parsed = provider.parse_config(config if config is not None else ssm.provider_config())
    client = await provider.new_client(parsed, store, ssm.credentials())
    try:
        yield client
    finally:
        await client.close()


def write_many(ssm: ParameterStoreBackend, count: int, prefix: str = "batch") -> dict[str, str]:
    values = {unique_key(prefix): secret() for _ in range(count)}
    with ssm.authentication_off():  # moto's IAM checks make each write slow
        for key, value in values.items():
            ssm.write(key, value)
    return values


async def test_a_securestring_is_read_decrypted_with_its_version(ssm: ParameterStoreBackend) -> None:
    key, value = unique_key(), secret()
    version = ssm.write(key, value)
    async with connected(ssm) as client:
        assert isinstance(client, ParameterStoreClient)
        got = await client.get_secret(RemoteRef(key))
    assert (got.value, got.version) == (value.encode(), version)


@pytest.mark.parametrize("count", [1, 10, 11, 25])
async def test_many_parameters_take_one_get_parameters_call_per_10(
    ssm: ParameterStoreBackend, proxy: RecordingProxy, count: int
) -> None:
    values = write_many(ssm, count)
    async with connected(ssm, ssm.provider_config(proxy.url)) as client:
        proxy.reset()
        results = await client.get_secrets([RemoteRef(key) for key in values])
    assert proxy.calls(GET_PARAMETERS) == math.ceil(count / 10)
    assert proxy.calls(GET_PARAMETER) == 0
    for key, value in values.items():
        got = results[RemoteRef(key)]
        assert isinstance(got, RemoteValue) and got.value == value.encode()


async def test_a_pinned_version_and_a_missing_parameter_in_one_batch(
    ssm: ParameterStoreBackend, proxy: RecordingProxy
) -> None:
    key, old, new = unique_key(), secret(), secret()
    first = ssm.write(key, old)
    ssm.write(key, new)
    missing = RemoteRef(unique_key("absent"))
    refs = [RemoteRef(key), RemoteRef(key, first), missing]
    async with connected(ssm, ssm.provider_config(proxy.url)) as client:
        results = await client.get_secrets(refs)
    current, pinned, absent = (results[r] for r in refs)
    assert isinstance(current, RemoteValue) and current.value == new.encode()
    assert isinstance(pinned, RemoteValue) and pinned.value == old.encode() and pinned.version == first
    assert isinstance(absent, SecretNotFound) and missing.key in absent.message
    assert_no_leak(absent, old, new)


async def test_change_detection_lists_fifty_names_a_call_and_reads_nothing(
    ssm: ParameterStoreBackend, proxy: RecordingProxy
) -> None:
    values = write_many(ssm, 60, "detect")
    refs = [RemoteRef(key) for key in values]
    async with connected(ssm, ssm.provider_config(proxy.url)) as client:
        held = await client.get_secrets(refs)
        proxy.reset()
        stamps = await client.stamps(refs, [])
        assert stamps is not None
        assert {r: stamps[r] for r in refs} == {r: cast(RemoteValue, held[r]).stamp for r in refs}
        changed = refs[7]
        ssm.write(changed.key, secret())
        again = await client.stamps(refs, [])
    # Never more calls than reading (6 GetParameters for 60 names): AWS answers up to 50
    # names a page (2 calls); moto answers 10, so here it costs as much as reading, without
    # decrypting anything.
    assert 2 * 2 <= proxy.calls(DESCRIBE) <= 2 * math.ceil(60 / 10)
    assert proxy.calls(GET_PARAMETERS) + proxy.calls(GET_PARAMETER) == 0
    assert again is not None
    assert [r for r in refs if again[r] != stamps[r]] == [changed]


@dataclass(frozen=True)
class Query:
    """The shape of the core's `FindQuery` (the `dataFrom.find` work): a name prefix and tags."""

    path: str = ""
    tags: tuple[tuple[str, str], ...] = ()


async def test_find_lists_names_by_prefix_and_tags_without_reading_a_value(
    ssm: ParameterStoreBackend, proxy: RecordingProxy
) -> None:
    root = f"/{unique_key('app')}"
    db = [f"{root}/db/password", f"{root}/db/user"]
    many = [f"{root}/many/p{i}" for i in range(12)]
    with ssm.authentication_off():
        for name in [*db, *many, f"{root}-sibling/x"]:
            ssm.write(name, secret())
        client_ssm = ssm.ssm
        for name in db:
            client_ssm.add_tags_to_resource(
                ResourceType="Parameter", ResourceId=name, Tags=[{"Key": "team", "Value": "shop"}]
            )
        client_ssm.add_tags_to_resource(
            ResourceType="Parameter", ResourceId=many[0], Tags=[{"Key": "team", "Value": "other"}]
        )
        client_ssm.close()
    async with connected(ssm, ssm.provider_config(proxy.url)) as client:
        assert isinstance(client, ParameterStoreClient)
        proxy.reset()
        assert sorted(await client.list_keys(Query(f"{root}/db"), limit=100)) == db
        assert sorted(await client.list_keys(Query(root, (("team", "shop"),)), limit=100)) == db
        assert sorted(await client.list_keys(Query(f"{root}/"), limit=100)) == sorted([*db, *many])
        # A prefix, as for Secrets Manager: the sibling hierarchy shares it.
        assert f"{root}-sibling/x" in await client.list_keys(Query(root), limit=100)
        assert len(await client.list_keys(Query(f"{root}/"), limit=5)) == 6  # one more: "too many"
    assert proxy.calls(GET_PARAMETERS) + proxy.calls(GET_PARAMETER) == 0


async def test_a_namespaced_parameter_store_without_auth_is_refused_naming_the_field(
    ssm: ParameterStoreBackend,
) -> None:
    config = {"region": "us-east-1", "endpoint": ssm.endpoint, "service": "ParameterStore"}
    with pytest.raises(InvalidStoreConfig) as info:
        async with connected(ssm, config):
            pass
    assert "spec.provider.aws.auth" in info.value.message


async def test_a_probe_that_would_cost_more_than_reading_stops_and_reads_instead(
    ssm: ParameterStoreBackend, proxy: RecordingProxy
) -> None:
    values = write_many(ssm, 3, "costly")
    refs = [RemoteRef(key) for key in values] + [RemoteRef(unique_key("gone"))]
    # What AWS answers while a name filter scans a large account: nothing yet, more to come.
    scanning = CannedReply(
        200, json.dumps({"Parameters": [], "NextToken": "more"}).encode(), (("Content-Type", JSON),)
    )
    async with connected(ssm, ssm.provider_config(proxy.url)) as client:
        proxy.reset()
        proxy.refuse_next(3, scanning)
        # One GetParameters call would answer these four: the probe gives up after one page.
        assert await client.stamps(refs, []) is None
        assert await client.stamps(refs[:1], []) is None  # learnt for this client
    assert proxy.calls(DESCRIBE) == 1


async def test_a_namespaced_parameter_store_is_refused_a_denied_address(
    ssm: ParameterStoreBackend, proxy: RecordingProxy
) -> None:
    key = unique_key()
    ssm.write(key, secret())
    denied = StoreContext(
        kind="SecretStore",
        name="team-store",
        namespace="team-a",
        denied_egress=(ipaddress.ip_network("127.0.0.0/8"),),
    )
    proxy.reset()
    with pytest.raises(EgressRefused) as caught:
        async with connected(ssm, ssm.provider_config(proxy.url), store=denied) as client:
            await client.get_secret(RemoteRef(key))
    assert caught.value.message.startswith("spec.provider.aws.endpoint: resolves to ")
    assert proxy.requests() == 0


async def test_web_identity_reads_parameters_with_the_roles_temporary_credentials(
    ssm: ParameterStoreBackend, proxy: RecordingProxy
) -> None:
    key, value = unique_key(), secret()
    ssm.write(key, value)
    credentials = ssm.credentials()
    config = {**ssm.web_identity_config(), "endpoint": proxy.url}
    provider = PROVIDERS["aws"]
    with ssm.authentication_off():  # moto cannot check the unsigned STS call
        client = await provider.new_client(provider.parse_config(config), NAMESPACED, credentials)
    try:
        # Authentication is on again: moto accepts only the role's temporary credentials.
        assert (await client.get_secret(RemoteRef(key))).value == value.encode()
    finally:
        await client.close()
    assert proxy.calls("AssumeRoleWithWebIdentity") == 1
    assert [r.service_account for r in credentials.requests] == [SERVICE_ACCOUNT]


@pytest.mark.parametrize("service", ["ParamStore", "SSM", ""])
def test_an_unknown_service_is_refused_naming_the_field(service: str) -> None:
    with pytest.raises(InvalidStoreConfig, match=r"spec\.provider\.aws\.service"):
        PROVIDERS["aws"].parse_config({"region": "us-east-1", "service": service})
