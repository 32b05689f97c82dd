"""A running operator exports what its dashboard and alerts read: the Ready count (set, not
the constant 0 it once was), the opt-in per-ExternalSecret series, and leadership."""

from __future__ import annotations

import re
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import Vaultsync, fake_entry
from tests.env.waiting import eventually

pytestmark = pytest.mark.e2e


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if re.match(r"vaultsync_(external_secret|leader)", s.name)
    }


def test_ready_counts_per_object_series_and_leadership(
    vs: Vaultsync, run_operator: Any, namespace: str
) -> None:
    vs.fake_store("fake", [fake_entry("db", "x")])
    spec = {"storeRef": {"name": "fake"}, "data": [{"secretKey": "p", "remoteRef": {"key": "db"}}]}
    vs.external_secret("good", spec)
    vs.external_secret("bad", {**spec, "data": [{"secretKey": "p", "remoteRef": {"key": "absent"}}]})
    args = (
        "--namespace",
        namespace,
        "--external-secret-metrics",
        "--external-secret-metrics-max-series",
        "1",
    )
    with run_operator(namespace, *args) as operator:
        vs.wait_reason("good", "Synced")
        vs.wait_reason("bad", "KeyNotFound")

        def exported() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            samples = scrape(operator.metrics_url)
            assert samples[("vaultsync_external_secrets_ready", ())] == 1
            assert samples[("vaultsync_external_secret_ready_untracked", ())] == 1
            return samples

        samples = eventually(exported, what="the Ready count and the capped per-object series")
        per_object = {k: v for k, v in samples.items() if k[0] == "vaultsync_external_secret_ready"}
        assert len(per_object) == 1  # the cap
        (((_, labels), value),) = per_object.items()
        assert dict(labels)["namespace"] == namespace
        assert value == (1 if dict(labels)["name"] == "good" else 0)
        assert samples[("vaultsync_leader", ())] == 1
        assert samples[("vaultsync_leader_acquisitions_total", ())] == 1

        vs.delete_external_secret("good")
        eventually(
            lambda: _equals(operator.metrics_url, "vaultsync_external_secrets_ready", 0),
            what="the Ready count to drop when the ExternalSecret is deleted",
        )


def _equals(url: str, name: str, value: float) -> None:
    assert scrape(url)[(name, ())] == value
