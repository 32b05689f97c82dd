"""The deny list: which addresses are refused, how refusals read, and that the connection goes
to the very address that was checked.

Connections here are real sockets on loopback addresses (Linux routes all of 127.0.0.0/8 to
the host); the SDK-level proofs, against real servers, are in tests/providers/test_egress.py.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3.util.connection

from vaultsync.config import add_run_arguments, from_arguments
from vaultsync.constants import DEFAULT_DENY_EGRESS_CIDRS
from vaultsync.egress import EgressGuard, guard_for, run_guarded
from vaultsync.errors import EgressRefused, ProviderError

FIELD = "spec.provider.vault.server"
DEFAULTS = tuple(ipaddress.ip_network(n) for n in DEFAULT_DENY_EGRESS_CIDRS)


def refusal(guard: EgressGuard, address: str) -> str:
    with pytest.raises(EgressRefused) as caught:
        guard.check(address)
    return caught.value.message


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("169.254.169.254", "169.254.0.0/16"),  # AWS, GCP, Azure IMDS, OpenStack...
        ("169.254.170.2", "169.254.0.0/16"),  # ECS task credentials
        ("fe80::1", "fe80::/10"),
        ("fd00:ec2::254", "fd00:ec2::254/128"),  # AWS IMDS over IPv6
        ("100.100.100.200", "100.100.100.200/32"),  # Alibaba Cloud
        ("168.63.129.16", "168.63.129.16/32"),  # Azure wireserver
        ("::ffff:169.254.169.254", "169.254.0.0/16"),  # IPv4 written as IPv6
        ("64:ff9b::a9fe:a9fe", "169.254.0.0/16"),  # through a NAT64 gateway
        ("2002:a9fe:a9fe::1", "169.254.0.0/16"),  # 6to4
        ("fe80::1%eth0", "fe80::/10"),  # with a scope
    ],
)
def test_the_default_list_refuses_metadata_and_link_local_addresses(address: str, network: str) -> None:
    message = refusal(EgressGuard(FIELD, DEFAULTS), address)
    ip = ipaddress.ip_address(address.split("%")[0])
    assert message == f"{FIELD}: resolves to {ip}, denied by --deny-egress-cidr {network}"


@pytest.mark.parametrize("address", ["10.0.0.5", "52.94.1.1", "fd00::1", "2600:1f18::1", "127.0.0.1"])
def test_the_default_list_lets_other_addresses_through(address: str) -> None:
    EgressGuard(FIELD, DEFAULTS).check(address)


def test_a_refusal_is_a_provider_error_retried_with_backoff() -> None:
    assert issubclass(EgressRefused, ProviderError)
    assert not issubclass(EgressRefused, OSError)  # urllib3 and aiohttp would wrap an OSError


def test_nothing_denied_means_no_guard() -> None:
    assert guard_for((), FIELD) is None
    assert run_guarded(None, lambda: 7) == 7


def parse(*argv: str) -> Any:
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    return from_arguments(parser.parse_args(list(argv)))


def test_the_flag_adds_ranges_to_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VAULTSYNC_DENY_EGRESS_CIDRS", raising=False)
    assert parse().deny_egress_cidrs == DEFAULTS
    config = parse("--deny-egress-cidr", "10.0.0.0/8", "--deny-egress-cidr", "fd00::/8")
    assert config.deny_egress_cidrs == (
        *DEFAULTS,
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("fd00::/8"),
    )


def test_the_environment_replaces_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULTSYNC_DENY_EGRESS_CIDRS", "10.0.0.0/8, 169.254.169.254/32")
    assert parse().deny_egress_cidrs == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("169.254.169.254/32"),
    )
    monkeypatch.setenv("VAULTSYNC_DENY_EGRESS_CIDRS", "")
    assert parse().deny_egress_cidrs == ()


@pytest.mark.parametrize("bad", ["10.0.0.1/8", "not-a-range", "10.0.0.0/33"])
def test_a_bad_range_stops_the_operator_at_start(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--deny-egress-cidr", bad)
    assert "not a CIDR range" in capsys.readouterr().err


@pytest.fixture
def listeners() -> Iterator[dict[str, socket.socket]]:
    """Listening sockets on 127.0.0.2 and 127.0.0.3, one port for both."""
    opened: dict[str, socket.socket] = {}
    port = 0
    for host in ("127.0.0.2", "127.0.0.3"):
        sock = socket.socket()
        sock.bind((host, port))
        port = sock.getsockname()[1]
        sock.listen(8)
        sock.setblocking(False)
        opened[host] = sock
    yield opened
    for sock in opened.values():
        sock.close()


def accepted(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


def connect(guard: EgressGuard | None, host: str, port: int) -> None:
    run_guarded(guard, lambda: urllib3.util.connection.create_connection((host, port), 2).close())


def test_a_denied_address_is_refused_before_any_connection(listeners: dict[str, socket.socket]) -> None:
    port = listeners["127.0.0.2"].getsockname()[1]
    guard = EgressGuard(FIELD, (ipaddress.ip_network("127.0.0.2/32"),))
    with pytest.raises(
        EgressRefused, match=r"resolves to 127\.0\.0\.2, denied by --deny-egress-cidr 127\.0\.0\.2/32"
    ):
        connect(guard, "127.0.0.2", port)
    assert accepted(listeners["127.0.0.2"]) == 0
    connect(guard, "127.0.0.3", port)  # another address is fine
    assert accepted(listeners["127.0.0.3"]) == 1
    connect(None, "127.0.0.2", port)  # and without a guard (a ClusterSecretStore) all is
    assert accepted(listeners["127.0.0.2"]) == 1


def test_a_name_is_checked_by_what_it_resolves_to() -> None:
    guard = EgressGuard(FIELD, (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")))
    with pytest.raises(EgressRefused, match=r"resolves to (127\.0\.0\.1|::1), denied by"):
        connect(guard, "localhost", 9)


def test_dns_rebinding_gains_nothing_the_checked_address_is_the_one_connected(
    listeners: dict[str, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name that answers an allowed address first and a denied one on every later lookup."""
    port = listeners["127.0.0.2"].getsockname()[1]
    real_getaddrinfo = socket.getaddrinfo
    answers = iter(["127.0.0.3"])

    def rebinding(host: str, *args: Any, **kwargs: Any) -> Any:
        if host == "rebind.test":
            host = next(answers, "127.0.0.2")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    guard = EgressGuard(FIELD, (ipaddress.ip_network("127.0.0.2/32"),))
    connect(guard, "rebind.test", port)
    assert accepted(listeners["127.0.0.3"]) == 1
    assert accepted(listeners["127.0.0.2"]) == 0
    with pytest.raises(EgressRefused):  # the next lookup answers the denied address: refused
        connect(guard, "rebind.test", port)
    assert accepted(listeners["127.0.0.2"]) == 0
