"""The leaked-secret flow end to end: rotate at the provider (moto), `vaultsync respond`,
every consumer restarted exactly once, and a report of who read the old version.

The operator runs with a ten-minute restart quiet period and window, and the ExternalSecrets
refresh hourly: only the urgent path of `respond` can re-read the key and restart the
workloads within the test's time.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client

from tests.e2e.cli_helpers import output_json, vaultsync_cli
from tests.e2e.conftest import Vaultsync
from tests.e2e.workloads import RELOAD, Workloads, deployment, stays
from tests.env.kube import Cluster, KubeApi
from tests.env.waiting import eventually
from tests.providers.backends.aws import AwsBackend, start_backend
from tests.providers.backends.base import unique_key

pytestmark = pytest.mark.e2e

PENDING = "vaultsync.io/pending-restart"


@pytest.fixture(scope="module")
def moto() -> Iterator[AwsBackend]:
    backend = start_backend()
    yield backend
    backend.close()


def _aws_store(vs: Vaultsync, moto: AwsBackend) -> None:
    data = {
        name: {
            key: base64.b64encode(value).decode()
            for (n, key), value in moto.credentials().secrets.items()
            if n == name
        }
        for name in {n for n, _ in moto.credentials().secrets}
    }
    for name, values in data.items():
        vs.api.core.create_namespaced_secret(
            vs.namespace, client.V1Secret(metadata=client.V1ObjectMeta(name=name), data=values)
        )
    vs.apply_store("aws", {"provider": {"aws": dict(moto.provider_config())}})
    vs.wait_store_ready("aws")


def _external_secret(vs: Vaultsync, name: str, key: str) -> None:
    vs.external_secret(
        name,
        {
            "storeRef": {"name": "aws"},
            "refreshInterval": "1h",
            "data": [{"secretKey": "password", "remoteRef": {"key": key, "property": "password"}}],
        },
    )


def _generation(workloads: Workloads, name: str) -> int:
    return int(workloads.get("Deployment", name)["metadata"]["generation"])


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _settled(vs: Vaultsync, secret: str) -> None:
    annotations = vs.secret(secret).metadata.annotations or {}
    assert PENDING not in annotations, f"Secret {secret} still waits for its restart"


def test_respond_rereads_everywhere_restarts_each_consumer_once_and_reports_readers(
    vs: Vaultsync,
    other_namespace: str,
    moto: AwsBackend,
    kube_api: KubeApi,
    cluster: Cluster,
    run_operator: Callable[..., Any],
) -> None:
    leaked, untouched = unique_key("leaked"), unique_key("untouched")
    moto.write(leaked, json.dumps({"password": "leaked-v1"}))
    moto.write(untouched, json.dumps({"password": "other-v1"}))
    other = Vaultsync(kube_api, other_namespace)
    here, there = Workloads(kube_api, vs.namespace), Workloads(kube_api, other_namespace)
    namespaces = ("--namespace", vs.namespace, "--namespace", other_namespace)
    slow = ("--restart-quiet", "600", "--restart-window", "600")
    with run_operator(vs.namespace, *namespaces, *slow) as operator:
        for side in (vs, other):
            _aws_store(side, moto)
            _external_secret(side, "db", leaked)
        _external_secret(vs, "cache", untouched)
        here.create(deployment("api", annotations={RELOAD: "db"}))
        here.create(deployment("worker", annotations={RELOAD: "cache"}))
        there.create(deployment("billing", annotations={RELOAD: "db"}))
        for side in (vs, other):
            side.wait_data("db", {"password": "leaked-v1"})
        vs.wait_data("cache", {"password": "other-v1"})
        before = {
            "api": _generation(here, "api"),
            "worker": _generation(here, "worker"),
            "billing": _generation(there, "billing"),
        }

        rotated_at = datetime.now(UTC).isoformat()
        moto.write(leaked, json.dumps({"password": "rotated-v2"}))
        moto.write(untouched, json.dumps({"password": "other-v2"}))
        audit = ("--audit-log", str(operator.log_path), "--rotated-at", rotated_at)
        result = vaultsync_cli(
            "respond", "aws", leaked, *audit, "--timeout", "120", "-o", "json", kubeconfig=cluster.kubeconfig
        )
        assert result.returncode == 0, result.stdout + result.stderr
        report = output_json(result)

        # Re-read everywhere now, though the refresh interval is an hour.
        for side in (vs, other):
            assert side.secret_data("db") == {"password": "rotated-v2"}
        assert {(s["namespace"], s["name"], s["result"]) for s in report["syncs"]} == {
            (vs.namespace, "db", "Synced"),
            (other_namespace, "db", "Synced"),
        }
        # Every consumer restarted, once, though the restart window is ten minutes.
        assert {(r["namespace"], r["name"], r["restarted"]) for r in report["restarts"]} == {
            (vs.namespace, "api", "yes"),
            (other_namespace, "billing", "yes"),
        }
        for side in (vs, other):
            eventually(lambda side=side: _settled(side, "db"), what="the restart mark to be cleared")
        after = {"api": _generation(here, "api"), "billing": _generation(there, "billing")}
        assert after == {"api": before["api"] + 1, "billing": before["billing"] + 1}
        # What does not read the leaked key was neither re-read nor restarted.
        assert vs.secret_data("cache") == {"password": "other-v1"}
        assert _generation(here, "worker") == before["worker"]

        # The report: who read the old version (the first syncs, before the rotation), and the new.
        readers = {r["externalSecret"]: r for r in report["readers"]}
        assert set(readers) == {f"{vs.namespace}/db", f"{other_namespace}/db"}
        for reader in readers.values():
            assert reader["oldVersionReads"] >= 1 and _time(reader["firstRead"]) < _time(rotated_at)
            assert reader["newVersionReads"] >= 1
        assert report["partial"] is False
        assert not [note for note in report["notes"] if "unchanged" in note]

        # Responding again changes nothing: no second restart.
        again = vaultsync_cli(
            "respond", "aws", leaked, *audit, "--timeout", "120", kubeconfig=cluster.kubeconfig
        )
        assert again.returncode == 0, again.stdout + again.stderr
        assert "Namespaces that read the old version:" in again.stdout
        assert vs.namespace in again.stdout and other_namespace in again.stdout
        assert "unchanged by this response" in again.stderr, "a response that changed nothing must say so"

        def restarted_once() -> None:
            assert _generation(here, "api") == before["api"] + 1
            assert _generation(there, "billing") == before["billing"] + 1

        stays(restarted_once, seconds=5)
