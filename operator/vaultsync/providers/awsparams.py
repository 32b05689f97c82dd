"""AWS Systems Manager Parameter Store, the `aws` provider's second service (`service: ParameterStore`).

Teams keep configuration and many secrets as SSM parameters (SecureString, KMS-encrypted), and
External Secrets Operator reads them from the same `aws` block. The identity, the endpoint
rules, the egress guard, throttling and the credential renewal are the Secrets Manager
client's (`aws.AwsClient`); what differs is the API: parameters are read ten at a time with
GetParameters (SecureString decrypted), a version is pinned as `name:version` or
`name:label`, change detection lists versions with DescribeParameters (fifty names a call,
no value), and so does `dataFrom.find` (by name prefix and tags).

Only `aws.py` loads this module, and only for a store that names the service.
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from vaultsync.errors import PermissionDenied, VaultsyncError
from vaultsync.providers.aws import (
    _DENIED_CODES,
    AwsClient,
    AwsConfig,
    AwsKeys,
    _code,
    service_client,
)
from vaultsync.providers.base import RemoteRef, RemoteValue

GET_PARAMETERS_LIMIT = 10  # GetParameters accepts at most 10 names per call
DESCRIBE_FILTER_VALUES = 50  # a DescribeParameters Name filter takes at most 50 names
DESCRIBE_PAGE_SIZE = 50


def _name(ref: RemoteRef) -> str:
    """The name GetParameter(s) takes: `name`, or `name:version` / `name:label` when pinned."""
    return f"{ref.key}:{ref.version}" if ref.version else ref.key


def _stamp(parameter: Mapping[str, Any]) -> str:
    """Version and modification time: a parameter deleted and created again is at version 1
    again, so the version alone would not tell it from the one held."""
    modified = parameter.get("LastModifiedDate")
    when = f"{modified.timestamp():.3f}" if modified is not None else ""
    return f"{parameter.get('Version', '')}@{when}"


def _value(parameter: Mapping[str, Any]) -> RemoteValue:
    version = str(parameter.get("Version", ""))
    return RemoteValue(str(parameter.get("Value", "")).encode(), version, stamp=_stamp(parameter))


def _chunks(refs: list[RemoteRef]) -> list[list[RemoteRef]]:
    """GetParameters calls of at most 10 names, never two of one parameter (a name and a
    pinned version of it), so each answer is matched to its ref by name alone."""
    chunks: list[list[RemoteRef]] = []
    for ref in refs:
        chunk = next(
            (c for c in chunks if len(c) < GET_PARAMETERS_LIMIT and all(r.key != ref.key for r in c)), None
        )
        if chunk is None:
            chunks.append(chunk := [])
        chunk.append(ref)
    return chunks


class ParameterStoreClient(AwsClient):
    """One store's Parameter Store client."""

    service_name: ClassVar[str] = "AWS Systems Manager Parameter Store"
    value_noun: ClassVar[str] = "parameter"
    not_found_codes: ClassVar[frozenset[str]] = frozenset(
        {"ParameterNotFound", "ParameterVersionNotFound", "ParameterVersionLabelNotFound"}
    )
    read_permission: ClassVar[str] = (
        "ssm:GetParameter(s) on it (and kms:Decrypt on the key of a SecureString parameter)"
    )
    _probe_pays = True  # False once a probe would have cost more calls than reading

    @staticmethod
    def _build(config: AwsConfig, keys: AwsKeys | None) -> Any:
        return service_client(config, keys, "ssm")

    async def _ssm(self) -> Any:
        return await self._client()

    async def get_secret(self, ref: RemoteRef) -> RemoteValue:
        ssm = await self._ssm()
        try:
            response = await self._call(
                functools.partial(ssm.get_parameter, Name=_name(ref), WithDecryption=True)
            )
        except (ClientError, BotoCoreError, ResponseParserError) as exc:
            raise self._convert(exc, ref) from None
        return _value(response["Parameter"])

    async def get_secrets(
        self, refs: Sequence[RemoteRef]
    ) -> Mapping[RemoteRef, RemoteValue | VaultsyncError]:
        """GetParameters calls of 10 names (pinned ones as `name:version`), SecureString decrypted."""
        chunks = _chunks(list(dict.fromkeys(refs)))
        out: dict[RemoteRef, RemoteValue | VaultsyncError] = {}
        for found in await asyncio.gather(*(self._parameters(chunk) for chunk in chunks)):
            out.update(found)
        return {r: out[r] for r in refs}

    async def _parameters(self, refs: list[RemoteRef]) -> dict[RemoteRef, RemoteValue | VaultsyncError]:
        ssm = await self._ssm()
        names = {_name(r): r for r in refs}
        try:
            response = await self._call(
                functools.partial(ssm.get_parameters, Names=list(names), WithDecryption=True)
            )
        except (ClientError, BotoCoreError, ResponseParserError) as exc:
            return dict.fromkeys(refs, self._convert(exc, None))
        by_key = {r.key: r for r in refs}  # one ref per key in a call (`_chunks`)
        out: dict[RemoteRef, RemoteValue | VaultsyncError] = {}
        for parameter in response.get("Parameters", []):
            # AWS answers a pinned name with its selector (":3", ":label"); not every server does.
            selector = parameter.get("Selector") or ""
            if selector:
                ref = names.get(f"{parameter.get('Name')}{selector}")
            else:
                ref = by_key.get(str(parameter.get("Name"))) or by_key.get(str(parameter.get("ARN")))
            if ref is not None:
                out[ref] = _value(parameter)
        for name in response.get("InvalidParameters", []):
            if (ref := names.get(name)) is not None:
                out[ref] = self._convert_code("ParameterNotFound", "", ref)
        # Names AWS answered under another form (an ARN, a pinned one without Selector): one by one.
        missing = [r for r in refs if r not in out]
        out.update(await super(AwsClient, self).get_secrets(missing))
        return out

    async def stamps(
        self, due: Sequence[RemoteRef], known: Sequence[RemoteRef]
    ) -> Mapping[RemoteRef, str | None] | None:
        """The stamp of each unpinned ref, from DescribeParameters filtered by name (50 names a
        call, no value read); `known` refs fill the calls `due` needs anyway. A pinned ref is
        left out, so it is read."""
        asked = list(dict.fromkeys(r.key for r in due if not r.version))
        if not asked:
            return {}
        room = math.ceil(len(asked) / DESCRIBE_FILTER_VALUES) * DESCRIBE_FILTER_VALUES
        extra = [r.key for r in known if not r.version and r.key not in asked]
        names = list(dict.fromkeys(asked + extra))[:room]
        versions = await self._versions(names)
        if versions is None:
            return None
        answered = set(names)
        refs = [r for r in dict.fromkeys([*due, *known]) if not r.version and r.key in answered]
        return {r: versions.get(r.key) for r in refs}

    async def _versions(self, names: list[str]) -> dict[str, str] | None:
        """Name → stamp of the listed names that exist; None when listing is refused or would
        take more calls than reading the values (learnt once per client: how many names a
        page answers is the server's choice, and a name filter may page through the account)."""
        if not self._listing_allowed or not self._probe_pays:
            return None
        ssm = await self._ssm()
        found: dict[str, str] = {}
        budget = math.ceil(len(names) / GET_PARAMETERS_LIMIT)  # the calls a read would take
        chunks = [names[i : i + DESCRIBE_FILTER_VALUES] for i in range(0, len(names), DESCRIBE_FILTER_VALUES)]
        for chunk in chunks:
            token, wanted = "", set(chunk)
            while True:
                if budget == 0:
                    self._probe_pays = False
                    return None
                budget -= 1
                kwargs: dict[str, Any] = {
                    "ParameterFilters": [{"Key": "Name", "Option": "Equals", "Values": chunk}],
                    "MaxResults": DESCRIBE_PAGE_SIZE,
                }
                if token:
                    kwargs["NextToken"] = token
                try:
                    page = await self._call(functools.partial(ssm.describe_parameters, **kwargs))
                except ClientError as exc:
                    if _code(exc) in _DENIED_CODES:  # a policy without DescribeParameters: read
                        self._listing_allowed = False
                        return None
                    raise self._convert(exc, None) from None
                except (BotoCoreError, ResponseParserError) as exc:
                    raise self._convert(exc, None) from None
                for entry in page.get("Parameters", []):
                    found[str(entry.get("Name"))] = _stamp(entry)
                token = page.get("NextToken", "")
                if not token or wanted <= found.keys():  # every name answered: no more pages
                    break
        return found

    async def list_keys(self, query: Any, limit: int) -> list[str]:
        """`dataFrom.find`: the names under `query.path` (a name prefix) carrying every tag of
        `query.tags`, from DescribeParameters (names and versions, no value read or decrypted);
        at most `limit` + 1. AWS's `tag:KEY` filter matches the pair itself; the prefix is
        checked here again on what AWS lists.

        `query` is the core's `FindQuery` (path, tags), the interface of the `dataFrom.find`
        work; typed loosely so this module does not depend on when that lands."""
        path, wanted = str(query.path), dict(query.tags)
        filters: list[dict[str, Any]] = (
            [{"Key": "Name", "Option": "BeginsWith", "Values": [path]}] if path else []
        )
        filters += [{"Key": f"tag:{key}", "Values": [value]} for key, value in wanted.items()]
        ssm = await self._ssm()
        names: list[str] = []
        token = ""
        while len(names) <= limit:
            kwargs: dict[str, Any] = {"ParameterFilters": filters, "MaxResults": DESCRIBE_PAGE_SIZE}
            if token:
                kwargs["NextToken"] = token
            try:
                page = await self._call(functools.partial(ssm.describe_parameters, **kwargs))
            except ClientError as exc:
                if _code(exc) in _DENIED_CODES:
                    raise PermissionDenied(
                        f"{self._store}: AWS denied DescribeParameters ({_code(exc)}): find needs "
                        "ssm:DescribeParameters in the store's IAM policy"
                    ) from None
                raise self._convert(exc, None) from None
            except (BotoCoreError, ResponseParserError) as exc:
                raise self._convert(exc, None) from None
            names += [
                str(entry["Name"])
                for entry in page.get("Parameters", [])
                if str(entry["Name"]).startswith(path)
            ]
            token = page.get("NextToken", "")
            if not token:
                break
        return names[: limit + 1]

    def _smallest_listing(self, client: Any) -> Callable[[], Any]:
        return functools.partial(client.describe_parameters, MaxResults=1)
