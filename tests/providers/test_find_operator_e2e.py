"""dataFrom.find through the running operator against every vault that lists: ten
ExternalSecrets asking the same find cost one listing and one read per key, counted by the
operator's own provider call metric, and each gets the keys the find matched."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from tests.e2e.conftest import Vaultsync
from tests.env.waiting import eventually
from tests.providers.backends.base import ListingBackend, unique_key
from tests.providers.conftest import LISTING_BACKENDS, Backends
from tests.providers.test_operator_e2e import credential_secrets, store_spec

pytestmark = pytest.mark.e2e

EXTERNAL_SECRETS = 10


@pytest.fixture(params=LISTING_BACKENDS)
def lister(request: pytest.FixtureRequest, backends: Backends) -> ListingBackend:
    return cast(ListingBackend, backends.get(request.param))


def test_ten_external_secrets_with_one_find_list_once_and_read_each_key_once(
    vs: Vaultsync,
    lister: ListingBackend,
    operator: Any,
) -> None:
    credential_secrets(vs, lister)
    vs.apply_store("vault", store_spec(lister, lister.provider_config()))
    vs.wait_store_ready("vault")
    team = unique_key("find")
    for i in range(3):
        lister.write_tagged(f"{team}-{i}", json.dumps({"password": f"p{i}"}), {"team": team})
    lister.write_tagged(f"{team}-other", json.dumps({"password": "x"}), {"team": "someone-else"})
    find = {
        "find": {"tags": {"team": team}},
        "rewrite": [{"regexp": {"source": f"^{team}-", "target": "key-"}}],
    }
    for n in range(EXTERNAL_SECRETS):
        vs.external_secret(
            f"es-{n}", {"storeRef": {"name": "vault"}, "refreshInterval": "1h", "dataFrom": [find]}
        )

    expected = {f"key-{i}": {"password": f"p{i}"} for i in range(3)}

    def synced(name: str) -> None:
        assert vs.secret_exists(name), vs.ready(name) if vs.get_external_secret(name).get("status") else name
        assert {k: json.loads(v) for k, v in vs.secret_data(name).items()} == expected

    for n in range(EXTERNAL_SECRETS):
        eventually(lambda n=n: synced(f"es-{n}"), what=f"es-{n} to hold the keys found")
    provider = lister.name
    assert operator.metric("vaultsync_provider_calls_total", provider=provider, operation="list") == 1
    assert operator.metric("vaultsync_provider_calls_total", provider=provider, operation="read") == 3
