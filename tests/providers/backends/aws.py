"""moto's server mode as the AWS Secrets Manager (and STS, IAM) the tests talk to.

moto runs as a subprocess on 127.0.0.1, so `stop()` really closes the port and
the provider sees what it would see if AWS went away. moto accepts any access
key until IAM authentication is switched on, which would make "wrong
credentials" untestable; so after starting, the backend creates an IAM user
and a role in moto and then turns authentication on. moto's random generator
is seeded first, so the user's access key is the same after every restart and
a client built before a restart can keep using it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import boto3
from botocore.exceptions import ClientError

from tests.env import processes
from tests.providers.backends.credentials import StaticCredentials

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/vaultsync-reader"
SERVICE_ACCOUNT = "app"
# moto does not verify web identity tokens; this one is shaped like a real JWT.
SERVICE_ACCOUNT_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6YXBwIn0.c2ln"
WRONG_KEY_ID = b"AKIAWRONGWRONGWRONG0"
WRONG_SECRET = b"wrong-secret-access-key-that-must-never-be-printed"
SEED = 1729
START_TIMEOUT = 30.0
ALLOW_SECRETS = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["secretsmanager:*", "sts:*"], "Resource": "*"}],
    }
)
TRUST_WEB_IDENTITY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/cluster"},
                "Action": "sts:AssumeRoleWithWebIdentity",
            }
        ],
    }
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def secret_ref(name: str) -> dict[str, Any]:
    return {
        "secretRef": {
            "accessKeyId": {"name": name, "key": "id"},
            "secretAccessKey": {"name": name, "key": "secret"},
        }
    }


class AwsBackend:
    name = "aws"
    policy = ALLOW_SECRETS  # what the test user may do

    def __init__(self, port: int) -> None:
        self.endpoint = f"http://127.0.0.1:{port}"
        self._port = port
        self._process: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None
        self._key: tuple[str, str] | None = None
        self._sm: SecretsManagerClient | None = None

    # -- Backend ------------------------------------------------------------------------

    def provider_config(self, endpoint: str | None = None) -> Mapping[str, Any]:
        """`endpoint` overrides the server address (to go through a proxy)."""
        return {
            "region": REGION,
            "endpoint": endpoint or self.endpoint,
            "auth": secret_ref("aws-creds"),
        }

    def bad_credentials_config(self) -> Mapping[str, Any]:
        return {**self.provider_config(), "auth": secret_ref("aws-creds-wrong")}

    def web_identity_config(self) -> Mapping[str, Any]:
        return {
            **self.provider_config(),
            "auth": {"jwt": {"serviceAccountRef": {"name": SERVICE_ACCOUNT}, "roleArn": ROLE_ARN}},
        }

    def credentials(self) -> StaticCredentials:
        key_id, secret = self.access_key
        return StaticCredentials(
            secrets={
                ("aws-creds", "id"): key_id.encode(),
                ("aws-creds", "secret"): secret.encode(),
                ("aws-creds-wrong", "id"): WRONG_KEY_ID,
                ("aws-creds-wrong", "secret"): WRONG_SECRET,
                ("aws-creds-wrong-secret", "id"): key_id.encode(),
                ("aws-creds-wrong-secret", "secret"): WRONG_SECRET,
            },
            tokens={SERVICE_ACCOUNT: SERVICE_ACCOUNT_TOKEN},
        )

    def write(self, key: str, value: str) -> str:
        return self._put(key, {"SecretString": value})

    def write_tagged(self, key: str, value: str, tags: dict[str, str]) -> str:
        version = self.write(key, value)
        self.secretsmanager.tag_resource(SecretId=key, Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        return version

    def delete(self, key: str) -> None:
        """Deletes `key` for good (no recovery window), so its name can be created again."""
        self.secretsmanager.delete_secret(SecretId=key, ForceDeleteWithoutRecovery=True)

    def settle(self) -> None:
        """Nothing to wait for: its version stamps tell apart writes made within a second."""

    def roll_back(self, key: str, version: str) -> None:
        """Moves AWSCURRENT back to an earlier version (what a failed rotation's rollback does)."""
        current = self.secretsmanager.describe_secret(SecretId=key)["VersionIdsToStages"]
        was = next(v for v, stages in current.items() if "AWSCURRENT" in stages)
        self.secretsmanager.update_secret_version_stage(
            SecretId=key, VersionStage="AWSCURRENT", MoveToVersionId=version, RemoveFromVersionId=was
        )

    def write_binary(self, key: str, value: bytes) -> str:
        return self._put(key, {"SecretBinary": value})

    @property
    def secretsmanager(self) -> SecretsManagerClient:
        """A client with the test user's rights, for what `write` does not cover."""
        assert self._sm is not None, "the moto server is not running"
        return self._sm

    @property
    def access_key(self) -> tuple[str, str]:
        assert self._key is not None, "the moto server is not running"
        return self._key

    def start(self) -> None:
        binary = Path(sys.executable).with_name("moto_server")
        if not binary.exists():
            raise RuntimeError(f"{binary} is missing: install the test extras (`make venv`)")
        server = Path(__file__).parents[1] / "servers" / "moto_server.py"  # moto, one fix
        env = {k: v for k, v in os.environ.items() if k != "INITIAL_NO_AUTH_ACTION_COUNT"}
        self._output = tempfile.TemporaryFile()  # noqa: SIM115  (lives as long as the server)
        self._process = subprocess.Popen(
            [sys.executable, str(server), "-H", "127.0.0.1", "-p", str(self._port)],
            stdout=self._output,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            self._wait_until_up()
            self._provision()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self._sm is not None:
            self._sm.close()
            self._sm = None
        processes.stop(self._process)
        self._process = None
        if self._output is not None:
            self._output.close()
            self._output = None

    def close(self) -> None:
        self.stop()

    # -- moto administration --------------------------------------------------------------

    @contextmanager
    def authentication_off(self) -> Iterator[None]:
        """moto cannot authenticate unsigned calls (AssumeRoleWithWebIdentity is one)."""
        self._moto_api("reset-auth", b"inf")
        try:
            yield
        finally:
            self._moto_api("reset-auth", b"0")

    def _moto_api(self, path: str, data: bytes) -> None:
        request = urllib.request.Request(
            f"{self.endpoint}/moto-api/{path}",
            data,
            headers={"Content-Type": "text/plain"},  # a form body would be parsed away
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def _wait_until_up(self) -> None:
        assert self._process is not None and self._output is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._output.seek(0)
                output = self._output.read().decode(errors="replace")
                raise RuntimeError(f"moto_server exited with {self._process.returncode}:\n{output}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1):
                    return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        raise RuntimeError(f"moto_server did not answer on {self.endpoint} in {START_TIMEOUT}s")

    def _provision(self) -> None:
        """An IAM user whose key the tests use, a role to assume, then authentication on."""
        self._moto_api(f"seed?a={SEED}", b"")
        iam = boto3.client(
            "iam",
            region_name=REGION,
            endpoint_url=self.endpoint,
            aws_access_key_id="provisioning",
            aws_secret_access_key="provisioning",  # accepted: authentication is still off
        )
        iam.create_user(UserName="vaultsync-test")
        iam.put_user_policy(UserName="vaultsync-test", PolicyName="secrets", PolicyDocument=self.policy)
        created = iam.create_access_key(UserName="vaultsync-test")["AccessKey"]
        iam.create_role(RoleName="vaultsync-reader", AssumeRolePolicyDocument=TRUST_WEB_IDENTITY)
        iam.put_role_policy(RoleName="vaultsync-reader", PolicyName="secrets", PolicyDocument=self.policy)
        iam.close()
        key = (created["AccessKeyId"], created["SecretAccessKey"])
        if self._key is not None and key != self._key:
            raise RuntimeError("moto issued a different access key after a restart; seeding failed")
        self._key = key
        self._moto_api("reset-auth", b"0")
        self._sm = boto3.client(
            "secretsmanager",
            region_name=REGION,
            endpoint_url=self.endpoint,
            aws_access_key_id=key[0],
            aws_secret_access_key=key[1],
        )

    def _put(self, key: str, value: dict[str, Any]) -> str:
        try:
            return self.secretsmanager.put_secret_value(SecretId=key, **value)["VersionId"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
        return self.secretsmanager.create_secret(Name=key, **value)["VersionId"]


def start_backend() -> AwsBackend:
    backend = AwsBackend(_free_port())
    backend.start()
    return backend
