"""Leader election on a `coordination.k8s.io` Lease: one replica writes, the others wait.

kopf's peering only pauses kopf's watches; the scheduler, rollouts and housekeeping of a
paused replica kept running on the state it last saw and wrote stale values. So the
operator does nothing but try for the Lease until it holds it, and only then starts kopf
and everything else (a fresh list, a fresh scheduler). Losing the Lease stops all of it
at once (the `Leadership` refuses every write, the services' tasks are cancelled, kopf
is stopped) and the process exits non-zero, so any in-memory state goes with it.

The rules are client-go's `tools/leaderelection`: a Lease held by another identity is
taken over only once it has not changed for `lease duration` by this process's own clock
(never by comparing another node's timestamps); the holder renews every `retry period`
and gives up when no renew succeeded for `renew deadline`; a clean shutdown releases the
Lease (holder emptied, duration 1 s) so a standby takes over within a retry period.
Every write is a PUT guarded by the `resourceVersion` read just before.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from vaultsync.conditions import micro_time
from vaultsync.errors import KubeConflict, KubeNotFound, VaultsyncError
from vaultsync.metrics import LEADER, LEADER_ACQUISITIONS

log = logging.getLogger(__name__)

# client-go's JitterFactor: a candidate waits retry period times uniform(1, 1.2) between tries.
RETRY_JITTER = 1.2


@dataclass(frozen=True)
class LeaseTiming:
    """client-go's three durations, checked as client-go's NewLeaderElector checks them."""

    duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if self.duration <= self.renew_deadline:
            raise ValueError(
                "--leader-elect-lease-duration: must be greater than --leader-elect-renew-deadline"
            )
        if self.renew_deadline <= RETRY_JITTER * self.retry_period:
            raise ValueError(
                "--leader-elect-renew-deadline: must be greater than 1.2 times --leader-elect-retry-period"
            )
        if self.retry_period <= 0:
            raise ValueError("--leader-elect-retry-period: must be more than 0")

    @property
    def duration_seconds(self) -> int:
        """The Lease's `leaseDurationSeconds` (a whole number of seconds)."""
        return math.ceil(self.duration)


@dataclass(frozen=True)
class Record:
    """The fields of a Lease's spec that election reads."""

    holder: str
    duration_seconds: int
    acquire_time: str | None
    renew_time: str | None
    transitions: int

    @classmethod
    def of(cls, lease: dict[str, Any]) -> Record:
        spec = lease.get("spec") or {}
        return cls(
            holder=spec.get("holderIdentity") or "",
            duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=spec.get("acquireTime"),
            renew_time=spec.get("renewTime"),
            transitions=int(spec.get("leaseTransitions") or 0),
        )

    def spec(self) -> dict[str, Any]:
        return {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": self.duration_seconds,
            "acquireTime": self.acquire_time,
            "renewTime": self.renew_time,
            "leaseTransitions": self.transitions,
        }


class Observation:
    """When this process last saw the Lease change, by its own monotonic clock.

    client-go never trusts the holder's `renewTime` (another node's clock): a Lease is
    expired when it has not changed for its duration since this process noticed.
    """

    def __init__(self) -> None:
        self.record: Record | None = None
        self.changed_at = 0.0

    def observe(self, record: Record, now: float) -> None:
        if record != self.record:
            self.record, self.changed_at = record, now

    def held_by_other(self, identity: str, now: float) -> bool:
        record = self.record
        return (
            record is not None
            and record.holder not in ("", identity)
            and now < self.changed_at + record.duration_seconds
        )


def next_record(old: Record | None, identity: str, timing: LeaseTiming, wall: datetime) -> Record:
    """The record to write: a renew keeps acquireTime and transitions, a takeover counts one."""
    stamp = micro_time(wall)
    if old is not None and old.holder == identity:
        return Record(identity, timing.duration_seconds, old.acquire_time or stamp, stamp, old.transitions)
    transitions = 0 if old is None else old.transitions + 1
    return Record(identity, timing.duration_seconds, stamp, stamp, transitions)


def released(old: Record, wall: datetime) -> Record:
    """client-go's release: no holder, a 1 s duration, so a standby takes over at once."""
    return Record("", 1, old.acquire_time, micro_time(wall), old.transitions)


def renew_deadline_passed(last_renew: float, now: float, timing: LeaseTiming) -> bool:
    return now - last_renew >= timing.renew_deadline


class LeaseClient(Protocol):
    """The three Lease calls election makes (implemented by `Kube`)."""

    async def read_lease(self, namespace: str, name: str) -> dict[str, Any]: ...

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]: ...

    async def replace_lease(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]: ...


class Leadership:
    """Whether this process may write, and the election that decides it."""

    def __init__(
        self,
        kube: LeaseClient,
        namespace: str,
        name: str,
        identity: str,
        timing: LeaseTiming,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kube, self._namespace, self._name = kube, namespace, name
        self.identity = identity
        self._timing = timing
        self._clock = clock
        self._observed = Observation()
        self._lease: dict[str, Any] | None = None
        self._renewed_at: float | None = None
        self._lost = False
        self._released = False
        self._keeper: asyncio.Task[None] | None = None
        self._on_lost: list[Callable[[], None]] = []

    def held(self) -> bool:
        """True while the last successful renew is younger than the renew deadline."""
        renewed = self._renewed_at
        return (
            not self._lost
            and not self._released
            and renewed is not None
            and not renew_deadline_passed(renewed, self._clock(), self._timing)
        )

    @property
    def lost(self) -> bool:
        return self._lost

    def on_lost(self, callback: Callable[[], None]) -> None:
        """Run `callback` (synchronously, at once) when the Lease is lost."""
        self._on_lost.append(callback)

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Try every retry period until this process holds the Lease; False if `stop` is set."""
        while not stop.is_set():
            if await self._try(timeout=self._timing.renew_deadline):
                log.info("leader election: acquired the Lease", extra=self._fields())
                LEADER.set(1)
                LEADER_ACQUISITIONS.inc()
                return True
            wait = self._timing.retry_period * random.uniform(1.0, RETRY_JITTER)  # noqa: S311
            try:
                await asyncio.wait_for(stop.wait(), wait)
            except TimeoutError:
                continue
        return False

    def start_renewing(self) -> None:
        """Renew in the background from now on (`release` stops it)."""
        self._keeper = asyncio.create_task(self._keep())

    async def _keep(self) -> None:
        """Renew every retry period; when none succeeded for the renew deadline, lose."""
        while True:
            await asyncio.sleep(self._timing.retry_period)
            renewed = self._renewed_at or self._clock()
            while not await self._try(timeout=self._timing.renew_deadline - (self._clock() - renewed)):
                if renew_deadline_passed(renewed, self._clock(), self._timing):
                    self._lose()
                    return
                await asyncio.sleep(self._timing.retry_period)

    async def release(self) -> None:
        """Stop renewing and, if still held, empty the holder so a standby takes over within
        its retry period (client-go's ReleaseOnCancel). Call it once every write has stopped."""
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
        if self._lease is None or not self.held():
            return
        self._released = True  # no write from here on
        LEADER.set(0)
        body = {**self._lease, "spec": released(Record.of(self._lease), datetime.now(UTC)).spec()}
        try:
            await asyncio.wait_for(self._kube.replace_lease(self._namespace, self._name, body), 5.0)
        except (VaultsyncError, TimeoutError) as exc:
            log.warning("leader election: Lease not released", extra={**self._fields(), "detail": str(exc)})
            return
        log.info("leader election: released the Lease", extra=self._fields())

    def _lose(self) -> None:
        self._lost = True
        LEADER.set(0)
        log.error("leader election: lost the Lease; stopping every write", extra=self._fields())
        for callback in self._on_lost:
            callback()

    async def _try(self, timeout: float | None = None) -> bool:
        """client-go's tryAcquireOrRenew: one read and one guarded write."""
        try:
            return await asyncio.wait_for(self._try_once(), timeout if timeout is None else max(timeout, 0.1))
        except TimeoutError:
            log.warning("leader election: Lease request timed out", extra=self._fields())
        except KubeConflict:
            pass  # another candidate wrote first: read again next time
        except VaultsyncError as exc:
            log.warning("leader election: Lease not written", extra={**self._fields(), "detail": exc.message})
        return False

    async def _try_once(self) -> bool:
        started = self._clock()
        try:
            lease = await self._kube.read_lease(self._namespace, self._name)
        except KubeNotFound:
            record = next_record(None, self.identity, self._timing, datetime.now(UTC))
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self._name, "namespace": self._namespace},
                "spec": record.spec(),
            }
            self._lease = await self._kube.create_lease(self._namespace, body)
            self._renewed_at = started
            return True
        old = Record.of(lease)
        self._observed.observe(old, self._clock())
        if self._observed.held_by_other(self.identity, self._clock()):
            return False
        record = next_record(old, self.identity, self._timing, datetime.now(UTC))
        self._lease = await self._kube.replace_lease(
            self._namespace, self._name, {**lease, "spec": record.spec()}
        )
        self._renewed_at = started
        return True

    def _fields(self) -> dict[str, str]:
        return {"lease": f"{self._namespace}/{self._name}", "identity": self.identity}
