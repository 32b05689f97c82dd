"""The write gate in `Kube`: while leadership is not held, no write leaves the process.

Pure logic in front of the network: the client points at a port nothing listens on, so a
request that passed the gate fails with "unreachable", and one the gate stopped fails
with `NotLeader` before anything is sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import kopf
import pytest

from vaultsync.errors import KubeError, NotLeader
from vaultsync.kube import Kube
from vaultsync.kuberetry import RetryPolicy

Call = Callable[[Kube], Awaitable[object]]
SECRET = {"metadata": {"name": "db", "resourceVersion": "1"}}
LEASE = {"metadata": {"name": "vaultsync", "resourceVersion": "1"}}


def _run(call: Call, may_write: bool) -> BaseException:
    async def main() -> BaseException:
        kube = Kube(
            info=kopf.ConnectionInfo(server="http://127.0.0.1:9"),
            retry=RetryPolicy(attempts=1),
            may_write=lambda: may_write,
        )
        try:
            await call(kube)
        except KubeError as exc:
            return exc
        finally:
            await kube.close()
        raise AssertionError("the request succeeded against nothing")

    return asyncio.run(main())


WRITES: list[Call] = [
    lambda k: k.replace_secret("ns", "db", SECRET),
    lambda k: k.create_secret("ns", SECRET),
    lambda k: k.delete_secret("ns", "db", "uid"),
    lambda k: k.patch_status("externalsecrets", "ns", "db", {}),
    lambda k: k.patch_workload("Deployment", "ns", "web", {}),
]


@pytest.mark.parametrize("write", WRITES, ids=["update", "create", "delete", "status", "workload"])
def test_a_write_without_leadership_is_refused_before_it_is_sent(write: Call) -> None:
    assert isinstance(_run(write, may_write=False), NotLeader)
    assert not isinstance(_run(write, may_write=True), NotLeader)


@pytest.mark.parametrize(
    "call",
    [
        lambda k: k.read_secret("ns", "db"),
        lambda k: k.read_lease("ns", "vaultsync"),
        lambda k: k.replace_lease("ns", "vaultsync", LEASE),
        lambda k: k.create_lease("ns", LEASE),
    ],
    ids=["read", "read lease", "renew lease", "create lease"],
)
def test_reads_and_the_leases_own_calls_pass_the_gate(call: Call) -> None:
    assert not isinstance(_run(call, may_write=False), NotLeader)
