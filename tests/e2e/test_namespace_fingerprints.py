"""Fingerprints are keyed per namespace, and moving to that keying restarts nothing.

Equal data in two namespaces must not give equal `status.dataHMAC`: a tenant who can read
another namespace's status (or a Secret's annotations) would learn that its password is
the same as theirs. The upgrade from operator-keyed fingerprints rewrites each Secret's
fingerprint once and must not roll a single workload.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from tests.e2e.conftest import GROUP, VERSION, Vaultsync, fake_entry
from tests.e2e.workloads import RELOAD, Workloads, container, deployment, env_from_key, pod_spec, stays
from tests.env import kube
from tests.env.kube import KubeApi
from tests.env.waiting import eventually

pytestmark = pytest.mark.e2e

FINGERPRINT = "vaultsync.io/data-fingerprint"
HMAC_KEY_SECRET = "vaultsync-hmac-key"
QUIET_SECONDS = 8.0  # beyond the default restart quiet (1 s) and window (5 s)


def _hmac(key: bytes, data: Mapping[str, bytes]) -> str:
    """The operator's documented encoding (vaultsync.fingerprints.data_hmac), independently."""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for name in sorted(data):
        mac.update(len(name.encode()).to_bytes(8, "big") + name.encode())
        mac.update(len(data[name]).to_bytes(8, "big") + data[name])
    return "hmac-sha256:" + mac.hexdigest()


def _operator_key(api: KubeApi, operator_namespace: str) -> bytes:
    secret = api.core.read_namespaced_secret(HMAC_KEY_SECRET, operator_namespace)
    return base64.b64decode(secret.data["key"])


def _namespace_key(operator_key: bytes, namespace: str) -> bytes:
    return hmac.new(operator_key, b"namespace:" + namespace.encode(), hashlib.sha256).digest()


def _data_hmac(vs: Vaultsync, name: str) -> str:
    return str((vs.get_external_secret(name).get("status") or {}).get("dataHMAC", ""))


def _sync(vs: Vaultsync, name: str = "db-creds") -> None:
    vs.fake_store("fake", [fake_entry("db", {"password": "same-everywhere"})])
    vs.external_secret(
        name,
        {
            "storeRef": {"name": "fake"},
            "data": [{"secretKey": "password", "remoteRef": {"key": "db", "property": "password"}}],
        },
    )
    vs.wait_data(name, {"password": "same-everywhere"})
    vs.wait_reason(name, "Synced")


def test_equal_data_in_two_namespaces_has_different_data_hmacs(
    vs: Vaultsync, kube_api: KubeApi, namespace: str, run_operator: Callable[..., Any]
) -> None:
    other = kube.create_namespace(kube_api, prefix="vs-test-other-")
    theirs = Vaultsync(kube_api, other)
    try:
        with run_operator(namespace, "--namespace", namespace, "--namespace", other):
            _sync(vs)
            _sync(theirs)
            ours_hmac, their_hmac = _data_hmac(vs, "db-creds"), _data_hmac(theirs, "db-creds")
            key = _operator_key(kube_api, namespace)

        data = {"password": b"same-everywhere"}
        assert ours_hmac != their_hmac
        assert ours_hmac == _hmac(_namespace_key(key, namespace), data)
        assert their_hmac == _hmac(_namespace_key(key, other), data)
        assert vs.secret("db-creds").metadata.annotations[FINGERPRINT] == ours_hmac
    finally:
        kube.delete_namespace(kube_api, other)


def test_upgrading_from_operator_keyed_fingerprints_rewrites_them_and_restarts_nothing(
    vs: Vaultsync, kube_api: KubeApi, namespace: str, run_operator: Callable[..., Any]
) -> None:
    """The state an older operator left (dataHMAC under the operator's own key) is upgraded in place."""
    workloads = Workloads(kube_api, namespace)
    data = {"password": b"same-everywhere"}
    with run_operator(namespace, "--namespace", namespace):
        _sync(vs)
        workloads.create(
            deployment(
                "web",
                annotations={RELOAD: "db-creds"},
                spec=pod_spec(container(**env_from_key("db-creds", "password"))),
            )
        )
        workloads.wait_rolled_out("Deployment", "web")
    key = _operator_key(kube_api, namespace)
    old = _hmac(key, data)
    kube_api.core.patch_namespaced_secret(
        "db-creds", namespace, {"metadata": {"annotations": {FINGERPRINT: old}}}
    )
    kube_api.custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "externalsecrets", "db-creds", {"status": {"dataHMAC": old}}
    )
    before = workloads.get("Deployment", "web")

    with run_operator(namespace, "--namespace", namespace):
        new = _hmac(_namespace_key(key, namespace), data)

        def upgraded() -> None:
            assert _data_hmac(vs, "db-creds") == new
            assert vs.secret("db-creds").metadata.annotations[FINGERPRINT] == new

        eventually(upgraded, what="the fingerprints to be rewritten under the namespace key")

        def untouched() -> None:
            after = workloads.get("Deployment", "web")
            assert after["metadata"]["generation"] == before["metadata"]["generation"]
            assert after["spec"]["template"] == before["spec"]["template"]
            assert workloads.restarted_at("Deployment", "web") is None

        stays(untouched, seconds=QUIET_SECONDS)
        assert vs.secret_data("db-creds") == {"password": "same-everywhere"}
