"""The invariants, checked on every sample while faults run, and once more at the end.

A thread lists the Secrets and Deployments over and over (each list is one consistent view
from the API server) and records every violation with the time it was seen:

- a Secret of a live ExternalSecret, once synced, is never missing or empty;
- a Secret only ever holds a value that was written to its key, and never goes back to an
  older one (a flip would be a spurious data change, and a spurious restart);
- the Secret of a deleted ExternalSecret, once gone, never comes back (no resurrection).

Restart counts and convergence are checked by `converged` and `restart_counts`. Samples
that fail because the API server is down (a fault the suite injected) are skipped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.chaos.world import PENDING_RESTART, Entry, World


@dataclass
class Snapshot:
    at: float
    secrets: dict[str, tuple[str | None, dict[str, str]]]
    generations: dict[str, int]


@dataclass
class Watcher:
    world: World
    interval: float
    violations: list[str] = field(default_factory=list)
    samples: int = 0
    latest: Snapshot | None = None
    on_pending: Callable[[str], None] | None = None  # called with a Secret that has the mark
    _synced: set[str] = field(default_factory=set)
    _index: dict[str, int] = field(default_factory=dict)
    _gone: set[str] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _fresh: threading.Condition = field(default_factory=threading.Condition)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="chaos-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def fresh(self, timeout: float = 60.0) -> Snapshot | None:
        """A snapshot taken after this call (None if the API server gave none in time)."""
        asked = time.monotonic()
        deadline = asked + timeout
        with self._fresh:
            while self.latest is None or self.latest.at < asked:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._fresh.wait(left)
            return self.latest

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        at = time.monotonic()
        found = self.world.secrets()
        generations = self.world.generations()
        if found is None or generations is None:
            return
        self.check(found)
        with self._fresh:
            self.latest = Snapshot(at, found, generations)
            self.samples += 1
            self._fresh.notify_all()
        if self.on_pending is not None:
            for name, (_, annotations) in found.items():
                if PENDING_RESTART in annotations:
                    self.on_pending(name)

    def check(self, found: dict[str, tuple[str | None, dict[str, str]]]) -> None:
        stamp = time.strftime("%H:%M:%S")
        for entry in list(self.world.entries.values()):
            present = entry.name in found
            if entry.deleted:
                if not present:
                    self._gone.add(entry.name)
                elif entry.name in self._gone:
                    self.violations.append(
                        f"{stamp} {entry.name}: Secret came back after its ExternalSecret was deleted"
                    )
                    self._gone.discard(entry.name)
                continue
            if not present:
                if entry.name in self._synced:
                    self.violations.append(f"{stamp} {entry.name}: Secret deleted")
                    self._synced.discard(entry.name)
                continue
            value = found[entry.name][0]
            if not value:
                self.violations.append(f"{stamp} {entry.name}: Secret emptied")
                continue
            self._synced.add(entry.name)
            self._check_order(entry, value, stamp)

    def _check_order(self, entry: Entry, value: str, stamp: str) -> None:
        with self.world.lock:
            index = entry.values.index(value) if value in entry.values else -1
        if index < 0:
            self.violations.append(f"{stamp} {entry.name}: Secret holds a value never written to its key")
        elif index < self._index.get(entry.name, 0):
            self.violations.append(
                f"{stamp} {entry.name}: Secret went back from value #{self._index[entry.name]} to #{index}"
            )
        else:
            self._index[entry.name] = index


def entry_converged(entry: Entry, snapshot: Snapshot) -> bool:
    """The Secret holds the latest value, and the workload was restarted once per rotation."""
    value, annotations = snapshot.secrets.get(entry.name, (None, {}))
    if value != entry.latest:
        return False
    if entry.workload is None:
        return True
    restarts = snapshot.generations.get(entry.workload, 0) - 1
    return PENDING_RESTART not in annotations and restarts >= entry.rotations


def unconverged(world: World, snapshot: Snapshot) -> list[str]:
    return [e.name for e in world.live() if not entry_converged(e, snapshot)]


def restart_counts(world: World, snapshot: Snapshot) -> tuple[int, int, list[str]]:
    """(lost, duplicated, details): restarts per workload against rotations of its Secret."""
    lost = duplicated = 0
    details = []
    for entry in world.live():
        if entry.workload is None:
            continue
        restarts = snapshot.generations.get(entry.workload, 0) - 1
        if restarts < entry.rotations:
            lost += entry.rotations - restarts
        if restarts > entry.rotations:
            duplicated += restarts - entry.rotations
        if restarts != entry.rotations:
            details.append(f"{entry.workload}: {restarts} restarts for {entry.rotations} rotations")
    return lost, duplicated, details
