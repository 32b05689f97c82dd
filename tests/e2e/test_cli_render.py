"""`vaultsync render` prints, offline, the very Secret the operator writes for the same inputs.

The operator syncs an ExternalSecret (templates, properties, `dataFrom.extract`, target
metadata) from a fake store; `render` gets the same manifest and the same values in a local
file, with no cluster at all, and its Secret must match the operator's byte for byte (data,
type, labels, annotations), except the HMAC fingerprint annotation only the operator can key.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient

from tests.e2e.cli_helpers import output_json, vaultsync_cli
from tests.e2e.conftest import GROUP, VERSION, Vaultsync, fake_entry

pytestmark = pytest.mark.e2e

OFFLINE = Path("/nonexistent/kubeconfig")  # render must never need a cluster
VALUES: dict[str, Any] = {
    "db": {"user": "app", "password": "pä$$ wörd\n", "port": 5432},
    "config": {"region": "eu-west-1", "replicas": 3},
    "app/flag": "on",
}
SPEC: dict[str, Any] = {
    "storeRef": {"name": "vault"},
    "refreshInterval": "1h",
    "dataFrom": [
        {"extract": {"key": "config"}},
        {
            "find": {"path": "app/"},
            "rewrite": [
                {"regexp": {"source": "^app/", "target": ""}},
                {"transform": {"template": "{{ value | replace('f', 'F') }}"}},
            ],
        },
    ],
    "data": [
        {"secretKey": "user", "remoteRef": {"key": "db", "property": "user"}},
        {"secretKey": "password", "remoteRef": {"key": "db", "property": "password"}},
    ],
    "target": {
        "name": "rendered",
        "labels": {"team": "shop"},
        "annotations": {"owner": "payments"},
        "template": {
            "data": {
                "dsn": "postgres://{{ user }}:{{ password | urlencode }}@db/{{ region }}",
                "config.json": '{"replicas": {{ replicas }}, "user": {{ user | tojson }}}',
                "password": "{{ password }}",
                "flag": "{{ Flag }}",
            }
        },
    },
}


def _manifest(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ExternalSecret",
        "metadata": {"name": "app", "namespace": namespace},
        "spec": SPEC,
    }


def test_render_matches_the_operators_secret_byte_for_byte(
    vs: Vaultsync, operator: Any, tmp_path: Path
) -> None:
    vs.fake_store("vault", [fake_entry(key, value) for key, value in VALUES.items()])
    vs.external_secret("app", SPEC)
    vs.wait_reason("app", "Synced")
    written = ApiClient().sanitize_for_serialization(vs.secret("rendered"))

    manifest = tmp_path / "externalsecret.yaml"
    manifest.write_text(yaml.safe_dump(_manifest(vs.namespace)))
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(VALUES, allow_unicode=True))
    result = vaultsync_cli(
        "render",
        "-f",
        str(manifest),
        "--values",
        str(values),
        "--show-values",
        "-o",
        "json",
        kubeconfig=OFFLINE,
    )
    assert result.returncode == 0, result.stderr
    rendered = output_json(result)

    assert rendered["data"] == written["data"]
    assert rendered["type"] == written["type"]
    assert rendered["metadata"]["labels"] == written["metadata"]["labels"]
    operator_annotations = dict(written["metadata"]["annotations"])
    operator_annotations.pop("vaultsync.io/data-fingerprint")
    assert rendered["metadata"]["annotations"] == operator_annotations
    assert (rendered["metadata"]["name"], rendered["metadata"]["namespace"]) == ("rendered", vs.namespace)
    assert base64.b64decode(rendered["data"]["password"]) == "pä$$ wörd\n".encode()
    assert base64.b64decode(rendered["data"]["flag"]) == b"on"  # found, rewritten, transformed


def test_render_masks_values_unless_asked_and_names_what_is_missing(tmp_path: Path) -> None:
    manifest = tmp_path / "externalsecret.yaml"
    manifest.write_text(yaml.safe_dump(_manifest("shop")))
    values = tmp_path / "values.json"
    values.write_text(json.dumps(VALUES))

    masked = vaultsync_cli("render", "-f", str(manifest), "--values", str(values), kubeconfig=OFFLINE)
    assert masked.returncode == 0, masked.stderr
    secret = yaml.safe_load(masked.stdout)
    assert set(secret["data"]) == {"dsn", "config.json", "password", "flag"}
    assert all(value.startswith("<masked: ") for value in secret["data"].values())
    for value in ("pä$$", "eu-west-1", base64.b64encode(b"app").decode()):
        assert value not in masked.stdout

    partial = tmp_path / "partial.yaml"
    partial.write_text(yaml.safe_dump({"db": VALUES["db"], "app/flag": "on"}))
    missing = vaultsync_cli("render", "-f", str(manifest), "--values", str(partial), kubeconfig=OFFLINE)
    assert missing.returncode == 1
    assert "spec.dataFrom[0].extract.key" in missing.stderr and "'config'" in missing.stderr

    broken = dict(SPEC, target={"template": {"data": {"x": "{{ user | no_such_filter }}"}}})
    manifest.write_text(yaml.safe_dump({**_manifest("shop"), "spec": broken}))
    failed = vaultsync_cli("render", "-f", str(manifest), "--values", str(values), kubeconfig=OFFLINE)
    assert failed.returncode == 1 and "no_such_filter" in failed.stderr, failed.stderr
