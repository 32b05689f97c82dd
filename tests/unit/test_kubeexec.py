"""Parsing an exec plugin's ExecCredential: what is accepted, and that a refusal names the
field without repeating the plugin's output (which may be a token)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import kopf
import pytest

from vaultsync.kubeexec import parse_credential, run_plugin

V1 = "client.authentication.k8s.io/v1"
TOKEN = "eyJ-very-secret-token"


def _output(status: object, api_version: str = V1) -> bytes:
    return json.dumps({"apiVersion": api_version, "kind": "ExecCredential", "status": status}).encode()


def test_a_token_or_a_certificate_pair_with_expiry_is_accepted() -> None:
    found = parse_credential(_output({"token": TOKEN, "expirationTimestamp": "2030-01-02T03:04:05Z"}), V1)
    assert found.token == TOKEN and found.expiration == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    pair = parse_credential(_output({"clientCertificateData": "CERT", "clientKeyData": "KEY"}), V1)
    assert (pair.certificate, pair.key, pair.expiration) == ("CERT", "KEY", None)


@pytest.mark.parametrize(
    ("output", "field"),
    [
        (b"token: " + TOKEN.encode(), "not an ExecCredential in JSON"),
        (_output({"token": TOKEN}, "client.authentication.k8s.io/v1beta1"), "not an ExecCredential of"),
        (_output({"clientCertificateData": TOKEN}), "clientKeyData come together"),
        (_output({}), "status.token or status.clientCertificateData: required"),
        (_output({"token": TOKEN, "expirationTimestamp": TOKEN}), "status.expirationTimestamp"),
        (_output({"token": 42}), "must be strings"),
    ],
)
def test_an_unusable_credential_is_refused_by_field_never_quoting_the_output(
    output: bytes, field: str
) -> None:
    with pytest.raises(kopf.LoginError) as refused:
        parse_credential(output, V1)
    assert field in str(refused.value) and TOKEN not in str(refused.value)


def test_the_plugins_spec_is_checked_before_anything_runs(tmp_path: Path) -> None:
    for spec, field in (
        ({"apiVersion": "client.authentication.k8s.io/v1alpha1", "command": "x"}, "exec.apiVersion"),
        ({"apiVersion": V1, "command": "x", "interactiveMode": "Always"}, "exec.interactiveMode"),
        ({"apiVersion": V1}, "exec.command: required"),
    ):
        with pytest.raises(kopf.LoginError, match=field):
            run_plugin(spec, {}, tmp_path)
    with pytest.raises(kopf.LoginError, match=r"could not run \(FileNotFoundError\); install it"):
        run_plugin({"apiVersion": V1, "command": "./absent", "installHint": "install it"}, {}, tmp_path)
