"""The finding as it was seen: two replicas against moto, a spec change, then a rotation.

With kopf peering, the paused replica kept the spec it last saw (`key-a`); when the value
behind `key-a` rotated at the provider it wrote that value into the Secret, and the active
replica put `key-b`'s back: a flip of the Secret's data (each one can restart workloads),
and a provider read of a key nobody uses any more at every refresh. With the Lease the
standby runs nothing, so neither happens.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import pytest

from tests.e2e.conftest import Vaultsync
from tests.e2e.test_leader_election import RETRY_PERIOD, _secret_values, _start
from tests.env.kube import KubeApi
from tests.providers.backends.base import unique_key
from tests.providers.conftest import Backends
from tests.providers.test_operator_e2e import credential_secrets, store_spec

pytestmark = pytest.mark.e2e


def _reads_of(key: str, *logs: str) -> int:
    return sum(1 for text in logs for line in text.splitlines() if "provider read" in line and key in line)


def test_two_replicas_a_spec_change_and_a_rotation_at_moto_never_flip_the_secret(
    kube_api: KubeApi,
    namespace: str,
    install_crds: list[str],
    backends: Backends,
    run_operator: Callable[..., Any],
) -> None:
    aws = backends.get("aws")
    vs = Vaultsync(kube_api, namespace)
    key_a, key_b = unique_key("leader-a"), unique_key("leader-b")
    aws.write(key_a, json.dumps({"password": "a1"}))
    aws.write(key_b, json.dumps({"password": "b1"}))
    credential_secrets(vs, aws)
    vs.apply_store("aws", store_spec(aws, aws.provider_config()))

    def data(key: str) -> list[dict[str, Any]]:
        return [{"secretKey": "password", "remoteRef": {"key": key, "property": "password"}}]

    with ExitStack() as stack:
        first = _start(run_operator, stack, namespace, "op-a")
        vs.wait_store_ready("aws")
        vs.external_secret("db", {"storeRef": {"name": "aws"}, "refreshInterval": "1s", "data": data(key_a)})
        vs.wait_data("db", {"password": "a1"})
        second = _start(run_operator, stack, namespace, "op-b")
        time.sleep(2 * RETRY_PERIOD)  # both replicas have seen the spec, the store and the Secret
        with _secret_values(kube_api, namespace) as seen:
            vs.patch_external_secret("db", {"spec": {"data": data(key_b)}})
            vs.wait_data("db", {"password": "b1"})
            stale_reads = _reads_of(key_a, first.logs(), second.logs())
            aws.write(key_a, json.dumps({"password": "a2"}))
            aws.write(key_b, json.dumps({"password": "b2"}))
            vs.wait_data("db", {"password": "b2"}, timeout=30)
            time.sleep(5.0)  # several refreshes of both replicas
        after = seen[seen.index("b1") :] if "b1" in seen else seen
        assert after == ["b1", "b2"], f"the Secret's password went through {seen}"
        assert _reads_of(key_a, first.logs(), second.logs()) == stale_reads, (
            "a replica still reads the old key"
        )
