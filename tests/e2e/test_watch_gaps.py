"""After a watch gap (410 Gone, then a re-list), what was deleted meanwhile is gone for the operator too.

The operator talks to the real API server through tests/env/gapproxy.py, which cuts the
watches of one resource, holds them while the test deletes objects directly, then answers
the resumed watch with the API server's own 410, so kopf lists again and never sees a
DELETED event: exactly what a long disconnect does.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import GROUP, VERSION, Vaultsync, fake_entry
from tests.e2e.workloads import stays
from tests.env.gapproxy import GapProxy
from tests.env.kube import Cluster
from tests.env.operator import OperatorProcess
from tests.env.waiting import eventually

pytestmark = pytest.mark.e2e

AFTER_RELIST_SECONDS = 12.0  # the operator's listing quiet time (5 s) and a few refreshes


@pytest.fixture
def gap_proxy(cluster: Cluster, tmp_path: Path) -> Iterator[tuple[GapProxy, Path]]:
    proxy = GapProxy(cluster.kubeconfig)
    proxy.start()
    try:
        yield proxy, proxy.write_kubeconfig(tmp_path / "proxy-kubeconfig")
    finally:
        proxy.stop()


def _spec(store: str = "fake") -> dict[str, Any]:
    return {
        "storeRef": {"name": store},
        "refreshInterval": "1s",
        "data": [{"secretKey": "password", "remoteRef": {"key": "db", "property": "password"}}],
    }


def _creates(operator: OperatorProcess) -> float:
    with urllib.request.urlopen(operator.metrics_url, timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "vaultsync_secret_writes_total" and sample.labels.get("operation") == "create":
                return float(sample.value)
    return 0.0


def _relisted(proxy: GapProxy) -> None:
    assert proxy.gone_sent >= 1, "the operator's watch was never answered 410"


def test_an_owner_deleted_during_a_gap_is_forgotten_and_its_secret_not_recreated(
    vs: Vaultsync, namespace: str, run_operator: Callable[..., Any], gap_proxy: tuple[GapProxy, Path]
) -> None:
    proxy, kubeconfig = gap_proxy
    vs.fake_store("fake", [fake_entry("db", {"password": "pw-1"})])
    with run_operator(namespace, "--namespace", namespace, env={"KUBECONFIG": str(kubeconfig)}) as op:
        vs.external_secret("kept", _spec())
        vs.external_secret("gone", _spec())  # creationPolicy Owner: garbage-collected with it
        vs.wait_data("kept", {"password": "pw-1"})
        vs.wait_data("gone", {"password": "pw-1"})
        creates = _creates(op)

        with proxy.gap("externalsecrets"):
            vs.delete_external_secret("gone")

            def collected() -> None:
                assert not vs.secret_exists("gone"), "the Secret is still there"

            eventually(collected, what="the garbage collector to delete the Secret")
        eventually(lambda: _relisted(proxy), what="the operator to list again")

        stays(collected, seconds=AFTER_RELIST_SECONDS)
        assert _creates(op) == creates, "the operator created Secrets again for a deleted ExternalSecret"
        assert "forgotten: deleted while unwatched" in op.logs()
        vs.wait_data("kept", {"password": "pw-1"})
        assert vs.ready("kept")["status"] == "True"


def test_a_store_deleted_during_a_gap_is_not_usable_afterwards(
    vs: Vaultsync, namespace: str, run_operator: Callable[..., Any], gap_proxy: tuple[GapProxy, Path]
) -> None:
    proxy, kubeconfig = gap_proxy
    vs.fake_store("fake", [fake_entry("db", {"password": "pw-1"})])
    # The re-list must return something to be noticed (docs/reliability.md, "Watch gaps").
    vs.fake_store("other", [fake_entry("db", {"password": "o-1"})])
    with run_operator(namespace, "--namespace", namespace, env={"KUBECONFIG": str(kubeconfig)}):
        vs.wait_store_ready("fake")
        vs.external_secret("app", _spec("fake"))
        vs.wait_data("app", {"password": "pw-1"})

        with proxy.gap("secretstores"):
            vs.api.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "secretstores", "fake")
        eventually(lambda: _relisted(proxy), what="the operator to list again")

        ready = vs.wait_reason("app", "StoreNotFound", timeout=AFTER_RELIST_SECONDS * 2)
        assert "'fake' not found" in ready["message"]
        assert vs.secret_data("app") == {"password": "pw-1"}  # fail static: the Secret stays
