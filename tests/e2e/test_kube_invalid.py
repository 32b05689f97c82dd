"""A write the real API server refuses as invalid (422) is reported by field, never by value.

The API server's Status for a 422 says which field is wrong in `details.causes[].field`,
but its messages quote the rejected value (`Invalid value: "..."`), and that value may be
a secret or a tenant's template output. The operator's error, the ExternalSecret's
condition and its Event name the field and what is wrong with it, and nothing else.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.e2e.conftest import Vaultsync, fake_entry
from tests.env.kube import Cluster
from vaultsync.errors import KubeInvalid, PermanentError
from vaultsync.kube import Kube

pytestmark = pytest.mark.e2e

MARKER = "Tr0ub4dor&3 s3cret"  # not a valid label value: spaces and '&'


def _refused(body: dict[str, Any], namespace: str) -> KubeInvalid:
    async def create() -> KubeInvalid:
        kube = Kube()
        try:
            with pytest.raises(KubeInvalid) as refused:
                await kube.create_secret(namespace, body)
            return refused.value
        finally:
            await kube.close()

    return asyncio.run(create())


def test_the_422_names_the_field_and_drops_the_quoted_value(
    cluster: Cluster, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    label = _refused(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "labels": {"tier": MARKER}}},
        namespace,
    )
    assert label.message == (
        "create secrets: rejected by the API server as invalid: metadata.labels: Invalid value"
    )
    too_long = _refused(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s", "annotations": {"note": MARKER * 20_000}},
        },
        namespace,
    )
    assert too_long.message == (
        "create secrets: rejected by the API server as invalid: metadata.annotations: Too long"
    )
    assert isinstance(label, PermanentError)  # the same input is refused again: no retry loop


def test_the_condition_of_a_refused_secret_names_the_field_and_not_the_value(
    vs: Vaultsync, operator: Any
) -> None:
    vs.fake_store("fake", [fake_entry("db", {"password": "pw-one"}, "1")])
    vs.external_secret(
        "app",
        {
            "storeRef": {"name": "fake"},
            "refreshInterval": "1h",
            "target": {"labels": {"tier": MARKER}},
            "data": [{"secretKey": "password", "remoteRef": {"key": "db", "property": "password"}}],
        },
    )
    condition = vs.wait_reason("app", "KubernetesError")
    assert "metadata.labels: Invalid value" in condition["message"], condition
    assert MARKER not in condition["message"]
    assert not vs.secret_exists("app")
    assert all(MARKER not in (event.message or "") for event in vs.events("app"))
    assert MARKER not in operator.logs()
