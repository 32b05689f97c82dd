"""The `fake` provider is refused unless the operator was started to allow it.

Its "remote" values are written in the store object itself: in a production cluster a
tenant's fake store would mint Secrets nobody vetted, so it is off by default and a store
using it says which field and which flag.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any, cast

import pytest

from vaultsync import constants as c
from vaultsync.config import add_run_arguments, from_arguments
from vaultsync.errors import StoreNotReady
from vaultsync.kube import Kube
from vaultsync.storeclients import ResolvedStore, StoreClients
from vaultsync.stores import Stores

FAKE_STORE = {
    "metadata": {"name": "demo", "namespace": "shop", "uid": "u1", "generation": 1},
    "spec": {"provider": {"fake": {"data": [{"key": "k", "value": "v"}]}}},
}


def parse(argv: list[str]) -> bool:
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    return from_arguments(parser.parse_args(argv)).enable_fake_provider


def test_the_fake_provider_is_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VAULTSYNC_ENABLE_FAKE_PROVIDER", raising=False)
    assert parse([]) is False


def test_the_flag_or_the_environment_turns_it_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VAULTSYNC_ENABLE_FAKE_PROVIDER", raising=False)
    assert parse(["--enable-fake-provider"]) is True
    monkeypatch.setenv("VAULTSYNC_ENABLE_FAKE_PROVIDER", "true")
    assert parse([]) is True
    monkeypatch.setenv("VAULTSYNC_ENABLE_FAKE_PROVIDER", "1")  # only "true" counts
    assert parse([]) is False


def resolve(stores: Stores, body: dict[str, Any]) -> ResolvedStore:
    return asyncio.run(stores.client_for(c.KIND_SECRET_STORE, body))


def test_a_fake_store_is_not_ready_naming_the_field_and_the_flag() -> None:
    stores = Stores(cast(Kube, None))  # a fake store never talks to the API server
    with pytest.raises(StoreNotReady) as refused:
        resolve(stores, FAKE_STORE)
    assert "spec.provider.fake" in refused.value.message
    assert "--enable-fake-provider" in refused.value.message
    assert "VAULTSYNC_ENABLE_FAKE_PROVIDER=true" in refused.value.message


def test_an_enabled_operator_serves_a_fake_store() -> None:
    stores = Stores(cast(Kube, None), StoreClients(cast(Kube, None), enable_fake_provider=True))
    assert resolve(stores, FAKE_STORE).provider == "fake"
