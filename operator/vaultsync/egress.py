"""Where a namespaced store's SDK may connect: never into the address ranges the admin denied.

A tenant writes a SecretStore's endpoint, and the operator connects there with its
own network position: from inside the cluster, next to the cloud's instance-metadata
service. `--deny-egress-cidr` (default: link-local and the clouds' metadata addresses,
see `DEFAULT_DENY_EGRESS_CIDRS`) lists ranges that a namespaced store's connections may
not reach. ClusterSecretStores are written by an admin and are exempt.

The check is made on the address actually connected to, after DNS resolution, in the
same step that connects: a name that resolves into a denied range is refused, and a
name whose DNS answer changes between a check and the connection (DNS rebinding) gains
nothing, because the socket is connected to the address that was checked, not to a
second resolution.

Why this design. The check has to sit where the SDK resolves and connects, below every
SDK feature that could reach a new host (redirects, retries, token endpoints):
  * hvac (through requests) and botocore both connect through urllib3, and every
    urllib3 connection resolves and connects in one public function,
    `urllib3.util.connection.create_connection`. This module wraps that function once.
    botocore has no public way to supply connection classes, so per-SDK connection
    classes would mean reaching into its private session; one wrapper covers both SDKs
    and their redirects and credential calls alike.
  * The wrapper is process-wide but the rule is per store, so the store's `EgressGuard`
    travels in a context variable. It is set by `EgressGuard.run` inside the worker
    thread, around the blocking SDK call, by each provider's one helper that moves SDK
    calls to threads; no reliance on a thread pool copying context. With no guard set
    (a ClusterSecretStore, or anything else in the process using urllib3) the wrapper
    behaves exactly as urllib3's own function.
  * The Azure SDK used here is async and connects through aiohttp, not urllib3. aiohttp
    has a public, per-session resolver hook: `GuardedResolver` checks each answer before
    aiohttp connects to exactly those addresses. aiohttp does not call a resolver for a
    host that is an IP address, so `EgressGuard.check_url` checks such hosts when the
    client is made (the hosts it can reach are fixed then, as redirects are not followed).
A proxy from the environment (HTTPS_PROXY) is what gets connected to and checked when
one is set; the proxy then decides where requests go.
"""

from __future__ import annotations

import contextvars
import ipaddress
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import aiohttp.abc
import urllib3.util.connection

from vaultsync.errors import EgressRefused

T = TypeVar("T")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
FLAG = "--deny-egress-cidr"
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052's well-known prefix: IPv4 in the last 32 bits

_GUARD: contextvars.ContextVar[EgressGuard | None] = contextvars.ContextVar("vaultsync_egress", default=None)
_urllib3_create_connection = urllib3.util.connection.create_connection


@dataclass(frozen=True)
class EgressGuard:
    """The deny list that applies to one namespaced store, and the spec field its refusals name."""

    field: str
    denied: tuple[Network, ...]

    def check(self, address: str) -> None:
        """Raises `EgressRefused` if the IP address `address` is in a denied range."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ip]
        if isinstance(ip, ipaddress.IPv6Address):  # IPv4 addresses written as IPv6 ones
            if ip.ipv4_mapped is not None:
                candidates.append(ip.ipv4_mapped)
            if ip.sixtofour is not None:
                candidates.append(ip.sixtofour)
            if ip in NAT64:
                candidates.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        for candidate in candidates:
            for network in self.denied:
                if candidate.version == network.version and candidate in network:
                    raise EgressRefused(f"{self.field}: resolves to {ip}, denied by {FLAG} {network}")

    def check_url(self, url: str) -> None:
        """Checks a URL whose host is an IP address; a name is checked when it is resolved."""
        host = urllib3.util.parse_url(url).host or ""
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return
        self.check(host.strip("[]"))

    def run(self, call: Callable[[], T]) -> T:
        """Runs a blocking SDK call with this guard on every connection it opens."""
        token = _GUARD.set(self)
        try:
            return call()
        finally:
            _GUARD.reset(token)


def guard_for(denied: tuple[Network, ...], field: str) -> EgressGuard | None:
    """The guard for a store's `denied_egress` (None when nothing is denied to it)."""
    return EgressGuard(field, denied) if denied else None


def run_guarded(guard: EgressGuard | None, call: Callable[[], T]) -> T:
    """`call()`, under `guard` if there is one (a namespaced store)."""
    return call() if guard is None else guard.run(call)


def _create_connection(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
    """urllib3's `create_connection`, but under a guard: resolve once, check every address,
    then connect to those very addresses (timeout and socket options passed on as given)."""
    guard = _GUARD.get()
    if guard is None:
        return _urllib3_create_connection(address, *args, **kwargs)
    host, port = address
    family = urllib3.util.connection.allowed_gai_family()
    infos = socket.getaddrinfo(host.strip("[]"), port, family, socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    for resolved in addresses:
        guard.check(resolved)
    error: OSError | None = None
    for resolved in addresses:
        try:
            return _urllib3_create_connection((resolved, port), *args, **kwargs)
        except OSError as exc:
            error = exc
    raise error or OSError(f"{host} resolved to no address")


urllib3.util.connection.create_connection = _create_connection


class GuardedResolver(aiohttp.abc.AbstractResolver):
    """aiohttp's resolver, refusing an answer in a denied range; aiohttp connects to the
    addresses returned here and resolves nothing else."""

    def __init__(self, by_host: Mapping[str, EgressGuard], default: EgressGuard) -> None:
        self._by_host = {host.lower(): guard for host, guard in by_host.items()}
        self._default = default  # for any other host, e.g. the default token authority
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[aiohttp.abc.ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        guard = self._by_host.get(host.lower(), self._default)
        for answer in answers:
            guard.check(answer["host"])
        return answers

    async def close(self) -> None:
        await self._inner.close()
