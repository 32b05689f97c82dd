"""Manifests of External Secrets Operator's own documentation examples, ported by the rules of
docs/differences.md only, run green on a real API server with the operator.

The examples (tests/data/eso-examples/, modeled on ESO's docs/snippets) are ESO manifests as a
team has them, with the store ESO's snippets leave out (`# ...`) named. Porting is what
differences.md says and nothing else: `vaultsync convert` rewrites the ESO objects (API group,
`secretStoreRef` → `storeRef`, Go templates → Jinja2), and the Go templates kept in a ConfigMap
are translated with the same translator. A conversion that is not complete fails the test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import Vaultsync, fake_entry
from vaultsync.convert import Document, convert
from vaultsync.convert.gotemplate import translate

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "eso-examples"
STORE = {
    "/grafana/user": "admin",
    "/grafana/password": "gr4fana-pw",
    "/credentials/password": "pw-1",
    "/credentials/username": "shop",
}
VARIABLES = {"user": "admin", "password": "gr4fana-pw"}


def fill(go_template: str, values: dict[str, str]) -> str:
    """What ESO renders for a template that only substitutes `{{ .name }}`."""
    for name, value in values.items():
        go_template = go_template.replace(f"{{{{ .{name} }}}}", value)
    return go_template


CONFIG = next(yaml.safe_load_all((EXAMPLES / "template-from-configmap.yaml").read_text()))["data"][
    "config.yaml"
]
# (example, Secret written, its data, its type, labels and annotations expected among its own)
EXPECTED: list[tuple[str, str, dict[str, str], str, dict[str, str], dict[str, str]]] = [
    (
        "template-from-configmap.yaml",
        "secret-to-be-created",
        {"config.yaml": fill(CONFIG, VARIABLES)},
        "Opaque",
        {},
        {},
    ),
    (
        "template-merge-policy.yaml",
        "template",
        {"name": "admin", "password": "pw-1-rotated", "username": "shop"},
        "Opaque",
        {},
        {},
    ),
    (
        "template-keys-and-values.yaml",
        "keys-and-values",
        {
            "my-application-admin": "gr4fana-pw",
            "application-type": "grafana",
            "username": "admin",
            "password": "gr4fana-pw",
        },
        "kubernetes.io/basic-auth",
        {"team": "grafana"},
        {"owner": "observability for admin", "last-sync-for-user/admin": "synced"},
    ),
]


def ported(path: Path) -> list[dict[str, Any]]:
    """The example's objects as vaultsync's, changed only as docs/differences.md says."""
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    eso = [d for d in documents if str(d["apiVersion"]).startswith("external-secrets.io/")]
    conversion = convert(Document(f"{path.name}#{i}", d) for i, d in enumerate(eso))
    assert conversion.complete, [str(f) for f in conversion.findings]
    configmaps = [d for d in documents if d["kind"] == "ConfigMap"]
    for configmap in configmaps:
        configmap["data"] = {k: translate(v) for k, v in configmap["data"].items()}
    return [*configmaps, *conversion.objects]


@pytest.mark.parametrize(
    ("example", "secret", "data", "secret_type", "labels", "annotations"),
    EXPECTED,
    ids=[e[0] for e in EXPECTED],
)
def test_an_eso_documentation_example_ported_runs_green(
    vs: Vaultsync,
    operator: Any,
    example: str,
    secret: str,
    data: dict[str, str],
    secret_type: str,
    labels: dict[str, str],
    annotations: dict[str, str],
) -> None:
    vs.fake_store("fake", [fake_entry(k, v) for k, v in STORE.items()])
    for body in ported(EXAMPLES / example):
        if body["kind"] == "ConfigMap":
            vs.api.core.create_namespaced_config_map(vs.namespace, body)
        else:
            assert body["kind"] == "ExternalSecret"
            vs.external_secret(body["metadata"]["name"], body["spec"])
    vs.wait_data(secret, data)
    written = vs.secret(secret)
    assert written.type == secret_type
    assert labels.items() <= (written.metadata.labels or {}).items()
    assert annotations.items() <= (written.metadata.annotations or {}).items()
