"""moto's server mode as AWS Systems Manager Parameter Store: the `aws` provider with
`service: ParameterStore`, held to the same contract as Secrets Manager.

The same moto server setup as `aws.py` (its own process, IAM authentication on), with a
policy that allows the ssm actions; values are SecureString parameters.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import boto3

from tests.providers.backends.aws import REGION, AwsBackend, _free_port

ALLOW_PARAMETERS = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["ssm:*", "kms:*", "sts:*"], "Resource": "*"}],
    }
)


class ParameterStoreBackend(AwsBackend):
    name = "aws"
    policy = ALLOW_PARAMETERS

    def provider_config(self, endpoint: str | None = None) -> Mapping[str, Any]:
        return {**super().provider_config(endpoint), "service": "ParameterStore"}

    @property
    def ssm(self) -> Any:
        key_id, secret = self.access_key
        return boto3.client(
            "ssm",
            region_name=REGION,
            endpoint_url=self.endpoint,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
        )

    def write(self, key: str, value: str) -> str:
        """A new version of SecureString parameter `/key` (names are paths)."""
        ssm = self.ssm
        try:
            answer = ssm.put_parameter(Name=key, Value=value, Type="SecureString", Overwrite=True)
        finally:
            ssm.close()
        return str(answer["Version"])

    def delete(self, key: str) -> None:
        ssm = self.ssm
        try:
            ssm.delete_parameter(Name=key)
        finally:
            ssm.close()

    def roll_back(self, key: str, version: str) -> None:
        """Parameter Store has no rollback: the old value is written again, as a new version."""
        ssm = self.ssm
        try:
            old = ssm.get_parameter(Name=f"{key}:{version}", WithDecryption=True)["Parameter"]["Value"]
        finally:
            ssm.close()
        self.write(key, old)


def start_backend() -> ParameterStoreBackend:
    backend = ParameterStoreBackend(_free_port())
    backend.start()
    return backend
