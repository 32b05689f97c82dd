"""Credentials never reach a log line: SDK loggers stay quiet under --verbose; a filter masks the rest."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from vaultsync.logsafety import SDK_LOGGERS, RedactingFilter, install, redact

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SESSION_TOKEN = "FQoGZXIvYXdzEXAMPLEsessiontoken0123456789"
SIGNATURE = "fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6YXBwIn0.c2lnbmF0dXJl"
VAULT_TOKEN = "hvs.CAESIJ1234567890abcdefghijklmnopqrstuv"
SECRET_ID = "9f8e7d6c-5b4a-3210-fedc-ba9876543210"
VALUE = "s3cr3t-Zebra-Quokka-42"


@pytest.mark.parametrize(
    ("text", "secrets"),
    [
        pytest.param(
            f"Sending http request: <AWSPreparedRequest headers={{'Authorization': b'AWS4-HMAC-SHA256 "
            f"Credential={ACCESS_KEY}/20260101/us-east-1/secretsmanager/aws4_request, "
            f"SignedHeaders=host, Signature={SIGNATURE}', 'X-Amz-Security-Token': b'{SESSION_TOKEN}'}}>",
            [ACCESS_KEY, SIGNATURE, SESSION_TOKEN],
            id="botocore-request",
        ),
        pytest.param(f"Authorization: Bearer {JWT}", [JWT], id="bearer-header"),
        pytest.param(f"X-Vault-Token: plain-token-{VALUE}", [VALUE], id="vault-token-header"),
        pytest.param(f'{{"role_id": "r", "secret_id": "{SECRET_ID}"}}', [SECRET_ID], id="approle-login"),
        pytest.param(f'{{"jwt": "{JWT}", "role": "app"}}', [JWT], id="kubernetes-login"),
        pytest.param(
            f"Action=AssumeRoleWithWebIdentity&WebIdentityToken={JWT}&RoleArn=arn", [JWT], id="sts-form"
        ),
        pytest.param(
            f'Response body: {{"SecretString": "{VALUE}", "Name": "x"}}', [VALUE], id="aws-response"
        ),
        pytest.param(f"client token {VAULT_TOKEN} renewed", [VAULT_TOKEN], id="vault-token-shape"),
        pytest.param(f'{{"password": "{VALUE}"}}', [VALUE], id="password-field"),
        pytest.param(f"client_secret={VALUE}&grant_type=client_credentials", [VALUE], id="azure-form"),
    ],
)
def test_credentials_are_masked(text: str, secrets: list[str]) -> None:
    clean = redact(text)
    for secret in secrets:
        assert secret not in clean
    assert "<redacted>" in clean


@pytest.mark.parametrize(
    "text",
    [
        "spec.provider.vault.auth.token: Field required",
        "spec.data[0].remoteRef.key: remote key 'prod/db' does not exist",
        "synced",
    ],
)
def test_field_paths_and_ordinary_messages_are_left_alone(text: str) -> None:
    assert redact(text) == text


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """A root handler like kopf's, removed afterwards; the SDK loggers' levels restored."""
    root = logging.getLogger()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    levels = {name: logging.getLogger(name).level for name in SDK_LOGGERS}
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def test_sdk_debug_lines_are_dropped_even_when_the_root_logger_is_at_debug(captured: io.StringIO) -> None:
    install()
    logging.getLogger("botocore.endpoint").debug(
        "Sending http request: X-Amz-Security-Token=%s", SESSION_TOKEN
    )
    logging.getLogger("urllib3.connectionpool").debug("GET /v1/secret/data/x")
    logging.getLogger("vaultsync.reconcile").debug("synced")
    assert captured.getvalue() == "synced\n"


def test_the_filter_masks_arguments_extras_and_tracebacks(captured: io.StringIO) -> None:
    install()
    log = logging.getLogger("vaultsync.test")
    log.info("header %s", f"Authorization: Bearer {JWT}", extra={"detail": f"token={VAULT_TOKEN}"})
    try:
        raise RuntimeError(f"login failed with secret_id={SECRET_ID}")
    except RuntimeError:
        log.exception("crash")
    record = logging.makeLogRecord({"msg": "%s", "args": (f"jwt: {JWT}",), "detail": f"jwt={JWT}"})
    RedactingFilter().filter(record)
    output = captured.getvalue() + record.getMessage() + repr(record.__dict__)
    for secret in (JWT, VAULT_TOKEN, SECRET_ID):
        assert secret not in output
    assert "RuntimeError" in output


def test_install_filters_every_root_handler_once(captured: io.StringIO) -> None:
    install()
    install()
    for handler in logging.getLogger().handlers:
        assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
