"""A live operator started without --enable-fake-provider refuses `fake` stores.

The fake provider's values are written in the store object itself, so in a real cluster
any tenant who may create a SecretStore could mint Secrets through it. The test harness
enables it (the other tests rely on it); here it runs with the default.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.conftest import Vaultsync, fake_entry
from tests.e2e.workloads import stays

pytestmark = pytest.mark.e2e

DISABLED = {"VAULTSYNC_ENABLE_FAKE_PROVIDER": "false"}


def test_a_fake_store_is_not_ready_and_writes_nothing_without_the_flag(
    vs: Vaultsync, namespace: str, run_operator: Callable[..., Any]
) -> None:
    with run_operator(namespace, "--namespace", namespace, env=DISABLED) as operator:
        vs.fake_store("fake", [fake_entry("db", {"password": "minted-by-a-tenant"})])
        vs.external_secret(
            "db-creds",
            {
                "storeRef": {"name": "fake"},
                "data": [{"secretKey": "password", "remoteRef": {"key": "db", "property": "password"}}],
            },
        )

        store = vs.wait_store_ready("fake", status="False")
        assert store["reason"] == "InvalidConfig"
        assert "spec.provider.fake" in store["message"]
        assert "--enable-fake-provider" in store["message"]
        condition = vs.wait_reason("db-creds", "StoreNotReady")
        assert "spec.provider.fake" in condition["message"]

        def nothing_written() -> None:
            assert not vs.secret_exists("db-creds")

        stays(nothing_written, seconds=3)
        assert "minted-by-a-tenant" not in operator.logs()


def test_the_same_store_syncs_once_the_operator_is_started_with_the_flag(
    vs: Vaultsync, namespace: str, run_operator: Callable[..., Any]
) -> None:
    vs.fake_store("fake", [fake_entry("db", {"password": "pw"})])
    with run_operator(namespace, "--namespace", namespace, "--enable-fake-provider", env=DISABLED):
        vs.external_secret(
            "db-creds",
            {
                "storeRef": {"name": "fake"},
                "data": [{"secretKey": "password", "remoteRef": {"key": "db", "property": "password"}}],
            },
        )
        vs.wait_data("db-creds", {"password": "pw"})
        vs.wait_store_ready("fake")
