"""When each ExternalSecret is reconciled: one queue and a fixed pool of workers.

kopf runs a handler per watch event; refreshing ten thousand objects on their
own intervals is not an event, so the operator keeps its own schedule: a heap
of due times and a bounded number of workers. The watch only tells the
scheduler what exists and what changed:

- a new object, a spec change (generation) or a new `force-sync` annotation
  value → reconcile now;
- an object already in sync at operator start (its status says so for the
  current generation) → resume on its refresh grid, with no provider read
  until it is due, unless the Secret watch has not reported its target Secret
  by the time the watches went quiet (deleted while the operator was down)
  → reconcile now;
- a managed Secret edited or deleted by hand → reconcile its owner now;
- a remote value that changed (seen by any reader through the shared cache)
  → reconcile every ExternalSecret that uses it now;
- a ConfigMap or Secret a template reads (`templateFrom`) changed → reconcile every
  ExternalSecret whose template reads it now, from the values held (no provider read).

Failures back off exponentially with jitter; success waits a jittered
refresh interval (0 = never again until something changes).

Budget: a refresh of a store whose call budget is spent (vaultsync.callbudget) is moved to
when the budget allows again, without holding a worker and without failing.

Bulkhead: at most `store_concurrency` syncs of one store run at once. An
ExternalSecret due while its store is at that limit waits in the store's own
line without holding a worker, so a store that hangs (each of its syncs ends
at the reconciler's deadline) keeps at most that many workers from everyone
else.
"""

from __future__ import annotations

import asyncio
import base64
import heapq
import itertools
import json
import logging
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from vaultsync import constants as c
from vaultsync.callbudget import Budgets
from vaultsync.conditions import is_ready, parse_time
from vaultsync.errors import InvalidSpec, crash_fields
from vaultsync.fingerprints import data_hmac, namespace_key
from vaultsync.metrics import QUEUE_DEPTH, STORE_STRETCH, SYNC_SECONDS
from vaultsync.models import ExternalSecret, parse_external_secret, slim, store_refs
from vaultsync.plan import SyncResult
from vaultsync.providers.base import RemoteRef
from vaultsync.readiness import TRACKER
from vaultsync.reconcile import Reconciler
from vaultsync.schedule import MIN_REFRESH_SECONDS, backoff, clamped, jittered, next_on_grid
from vaultsync.targets import managed_keys

log = logging.getLogger(__name__)

Key = tuple[str, str]  # namespace, name
Source = tuple[str, str, str]  # namespace, kind, name of a templateFrom object
NO_SOURCES: frozenset[Source] = frozenset()
INVALID_SPEC_RETRY = 300.0
# Even with no watch event, the target Secret is read again this often (a watch can miss
# a deletion while it reconnects).
TARGET_RECHECK_SECONDS = 3600.0


# The startup check of resumed objects' targets runs once no object has been resumed for
# this long: the initial listings of ExternalSecrets and Secrets are then both done.
STARTUP_CHECK_QUIET_SECONDS = 15.0


@dataclass(slots=True)
class _Tracked:
    # The slimmed body as compact JSON, decoded when used: as dicts, a bench ExternalSecret's
    # spec, status and metadata held about 5 KB (45 of the operator's megabytes at 10,000
    # objects); as text about 900 bytes. Decoding it costs a few microseconds a refresh.
    packed: str
    generation: int
    force_token: str | None
    # The store it names, as one bulkhead (`_store_of`), kept so a refresh need not decode.
    bulkhead: str
    due: float | None = None
    max_age: float = 0.0
    force: bool = False
    attempts: int = 0
    running: bool = False
    rerun: bool = False
    # Tuples, not sets, and one shared empty value: ten thousand objects each holding three
    # sets (216 bytes each even when empty) were six of the operator's megabytes.
    store_key: str | None = None
    remote_keys: tuple[str, ...] = ()
    other_sources: tuple[tuple[str, str], ...] = ()
    # The target Secret as last checked: `target_changes` counts what the Secret watch
    # reported since, so a refresh can trust it without reading it again.
    target_changes: int = 0
    target_checked: tuple[int, float] | None = None  # (target_changes then, when)
    # The target Secret was deleted: confirm the ExternalSecret still exists before writing.
    verify: bool = False
    # `target_changes` when this process last synced it (refreshPolicy CreatedOnce).
    synced_changes: int = 0
    # The ConfigMaps and Secrets its template reads: (namespace, kind, name).
    template_sources: frozenset[Source] = NO_SOURCES
    # Due and handed to the workers' queue, not yet taken by one.
    queued: bool = False

    @property
    def body(self) -> dict[str, Any]:
        return cast(dict[str, Any], json.loads(self.packed))

    @body.setter
    def body(self, body: Mapping[str, Any]) -> None:
        self.packed = _pack(body)


class Scheduler:
    def __init__(
        self,
        reconciler: Reconciler,
        hmac_key: bytes,
        workers: int = 32,
        first_sync_max_age: float = 30.0,
        clock: Any = time.monotonic,
        min_refresh: float = MIN_REFRESH_SECONDS,
        store_concurrency: int = c.STORE_CONCURRENCY,
        budgets: Budgets | None = None,
        on_stretch: Callable[[str, float], None] | None = None,
    ) -> None:
        self._reconciler = reconciler
        self._budgets = budgets
        self._on_stretch = on_stretch
        self._store_concurrency = store_concurrency
        self._store_running: dict[str, int] = defaultdict(int)
        self._store_line: dict[str, dict[Key, None]] = defaultdict(dict)  # ordered, no repeats
        self._key = hmac_key
        self._workers = workers
        self._first_sync_max_age = first_sync_max_age
        self._clock = clock
        self._min_refresh = min_refresh
        self._tracked: dict[Key, _Tracked] = {}
        self._heap: list[tuple[float, int, Key]] = []
        self._seq = itertools.count()
        # The dispatcher sleeps until the heap's first due time or until `_schedule` puts an
        # earlier one: one task wakes, not every idle worker.
        self._wakeup = asyncio.Event()
        self._dispatch_at = 0.0
        self._ready: asyncio.Queue[tuple[Key, _Tracked]] = asyncio.Queue()
        self._users: dict[tuple[str, str], set[Key]] = defaultdict(set)
        self._template_users: dict[Source, set[Key]] = defaultdict(set)
        self._tasks: list[asyncio.Task[None]] = []
        # Until the startup check: objects resumed on their grid, and the targets the
        # Secret watch reported (freed once checked).
        self._resumed: set[Key] | None = set()
        self._targets_seen: set[Key] = set()
        self._check_at = 0.0

    # What the watches report -----------------------------------------------------------------

    def observe(self, body: Mapping[str, Any], deleted: bool = False) -> None:
        meta = body["metadata"]
        key: Key = (meta["namespace"], meta["name"])
        if deleted:
            self._forget(key)
            return
        TRACKER.observe(key, body)
        body = slim(body)
        generation = meta.get("generation", 0)
        token = (meta.get("annotations") or {}).get(c.ANNOTATION_FORCE_SYNC)
        tracked = self._tracked.get(key)
        if tracked is None:
            tracked = _Tracked(packed=_pack(body), generation=generation, force_token=token, bulkhead="")
        self._index_template_sources(key, tracked, _template_sources(key[0], body))
        tracked.bulkhead = sys.intern(_store_of(key, body))
        if key not in self._tracked:
            # A force-sync annotation set while the operator was down is still a request.
            tracked.force = token is not None and token != (body.get("status") or {}).get("forceSyncHandled")
            self._tracked[key] = tracked
            QUEUE_DEPTH.set(len(self._tracked))
            resume_at = self._resume_time(tracked)
            if resume_at is None:
                self._schedule(key, 0.0, max_age=self._first_sync_max_age)
            else:
                self._resumed_on_grid(key, resume_at)
            return
        tracked.body = body
        if generation != tracked.generation:
            tracked.generation = generation
            tracked.attempts = 0
            tracked.target_checked = None
            self._schedule(key, 0.0, max_age=self._first_sync_max_age)
        if token != tracked.force_token:
            tracked.force_token = token
            tracked.force = True
            self._schedule(key, 0.0, max_age=0.0)

    def secret_changed(self, body: Mapping[str, Any], deleted: bool) -> None:
        """A managed Secret changed; if not by us (data differs from status), restore it."""
        meta = body["metadata"]
        owner = (meta.get("labels") or {}).get(c.LABEL_OWNER_NAME)
        key: Key = (meta["namespace"], owner or "")
        ours = not deleted and self.written_by_us(body)
        if self._resumed is not None and ours:
            self._targets_seen.add(key)
        elif self._resumed is not None:
            # Reported before its ExternalSecret, or not as we wrote it: the startup check
            # reconciles it (edited while the operator was down, or fingerprinted under an
            # older key derivation).
            self._targets_seen.discard(key)
        tracked = self._tracked.get(key)
        if tracked is None:
            return
        if ours:
            return
        tracked.target_changes += 1
        tracked.verify = tracked.verify or deleted
        self._schedule(key, 0.0, max_age=self._refresh(tracked))

    def template_source_changed(self, kind: str, body: Mapping[str, Any], *, listed: bool) -> None:
        """A ConfigMap or Secret changed: every ExternalSecret whose template reads it renders
        again now, from the values held (Periodic ones: OnChange and CreatedOnce follow their
        spec only). The initial listing is no change: the objects are read at each sync."""
        if listed:
            return
        meta = body["metadata"]
        for key in list(self._template_users.get((meta.get("namespace", ""), kind, meta["name"]), ())):
            tracked = self._tracked.get(key)
            if tracked is not None and _periodic(tracked.body):
                self._schedule(key, 0.0, max_age=self._refresh(tracked))

    def _index_template_sources(self, key: Key, tracked: _Tracked, sources: frozenset[Source]) -> None:
        for source in tracked.template_sources - sources:
            self._drop_template_user(source, key)
        for source in sources:
            self._template_users[source].add(key)
        tracked.template_sources = sources

    def _drop_template_user(self, source: Source, key: Key) -> None:
        users = self._template_users.get(source)
        if users is not None:
            users.discard(key)
            if not users:
                del self._template_users[source]

    def written_by_us(self, body: Mapping[str, Any]) -> bool:
        """True when the Secret's managed keys still carry the HMAC we wrote.

        Nobody without the operator's key can produce a matching fingerprint,
        so a hand edit of a managed key (or of the annotations) is detected.
        """
        annotations = body["metadata"].get("annotations") or {}
        ours = managed_keys(body)
        data = {k: base64.b64decode(v) for k, v in (body.get("data") or {}).items() if k in ours}
        fingerprint = annotations.get(c.ANNOTATION_DATA_FINGERPRINT)
        key = namespace_key(self._key, body["metadata"]["namespace"])
        return set(data) == ours and fingerprint == data_hmac(key, data)

    def remote_changed(self, store_key: str, ref: RemoteRef) -> None:
        """A shared read saw a new value: everyone using that key refreshes from it now."""
        for key in list(self._users.get((store_key, ref.key), ())):
            tracked = self._tracked.get(key)
            if tracked is not None and _periodic(tracked.body):
                self._schedule(key, 0.0, max_age=self._refresh(tracked))

    async def relisted(self, seen: set[Hashable]) -> None:
        """A listing of ExternalSecrets is over: those it lacked are confirmed (one GET each,
        at their next run) and forgotten if gone; `observe` will have added any new ones."""
        for key in [k for k in self._tracked if k not in seen]:
            self._tracked[key].verify = True
            self._schedule(key, 0.0, max_age=self._refresh(self._tracked[key]))

    # Running ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(self._workers)]
        self._tasks.append(asyncio.create_task(self._dispatch()))
        self._check_at = self._clock() + STARTUP_CHECK_QUIET_SECONDS
        self._tasks.append(asyncio.create_task(self._check_resumed_targets()))

    def _resumed_on_grid(self, key: Key, resume_at: float) -> None:
        tracked = self._tracked[key]
        if resume_at != float("inf"):
            self._schedule(key, resume_at - self._wall(), max_age=self._refresh(tracked))
        if self._resumed is not None:
            self._resumed.add(key)
            self._check_at = self._clock() + STARTUP_CHECK_QUIET_SECONDS

    async def _check_resumed_targets(self) -> None:
        """Once the watches have been quiet for a while after start, every object resumed
        on its grid whose target Secret the watch never reported intact is reconciled now:
        its Secret was deleted or edited while the operator was down, or carries a
        fingerprint under an older key. One check, no API request."""
        while (wait := self._check_at - self._clock()) > 0:
            await asyncio.sleep(wait)
        resumed, seen = self._resumed or set(), self._targets_seen
        self._resumed, self._targets_seen = None, set()
        for key in resumed - seen:
            tracked = self._tracked.get(key)
            if tracked is not None:
                tracked.target_changes += 1
                self._schedule(key, 0.0, max_age=self._refresh(tracked))

    def halt(self) -> None:
        """Cancel every worker at once (leadership lost); `stop` then waits for them."""
        for task in self._tasks:
            task.cancel()

    async def stop(self) -> None:
        self.halt()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _worker(self) -> None:
        while True:
            key, tracked = await self._ready.get()
            tracked.queued = False
            if self._tracked.get(key) is not tracked:
                continue  # forgotten (and perhaps seen again) since it was queued
            if tracked.running:
                tracked.rerun = True
                continue
            store = tracked.bulkhead
            budget = self._budgets.get(store) if self._budgets is not None else None
            if budget is not None and (wait := budget.wait_seconds()) > 0:
                self._stretch(key, tracked, store, wait)
                continue
            if self._store_running[store] >= self._store_concurrency:
                self._store_line[store][key] = None  # runs when one of the store's syncs ends
                continue
            tracked.running = True
            self._store_running[store] += 1
            try:
                await self._run(key, tracked)
            except Exception as exc:
                log.error("reconcile crashed", extra={"externalSecret": "/".join(key), **crash_fields(exc)})
                tracked.attempts += 1
                self._schedule(key, backoff(tracked.attempts), max_age=0.0)
            finally:
                tracked.running = False
                self._store_done(store)
            if tracked.rerun:
                tracked.rerun = False
                self._schedule(key, 0.0, max_age=tracked.max_age)

    def _stretch(self, key: Key, tracked: _Tracked, store: str, wait: float) -> None:
        """The store's call budget is spent: this refresh moves to when it allows again.
        Every refresh of the store due meanwhile moves alike, in due order: none fails.

        It is looked at again at least every BUDGET_RECOVER_SECONDS: a budget throttling
        shrank recovers (or is lifted) sooner than the wait it had while shrunk."""
        delay = min(wait, c.BUDGET_RECOVER_SECONDS)
        STORE_STRETCH.labels(store=store).inc(delay)
        self._schedule(key, delay, max_age=tracked.max_age)
        if self._on_stretch is not None:
            self._on_stretch(store, wait)

    def _store_done(self, store: str) -> None:
        self._store_running[store] -= 1
        if not self._store_running[store]:
            del self._store_running[store]
        line = self._store_line.get(store)
        while line:
            key = next(iter(line))
            del line[key]
            tracked = self._tracked.get(key)
            if tracked is not None:
                self._schedule(key, 0.0, max_age=tracked.max_age)
                break
        if line is not None and not line:
            del self._store_line[store]

    async def _dispatch(self) -> None:
        """Moves every due key from the heap to the workers' queue, in due order, then sleeps
        until the next due time or an earlier `_schedule`.

        Profiled at 10,000 ExternalSecrets: with every idle worker waiting on the heap
        itself, each `_schedule` woke all 32 of them, and that wake-up was a quarter of the
        operator's CPU time in steady state."""
        loop = asyncio.get_running_loop()
        while True:
            now = self._clock()
            while self._heap:
                due, _, key = self._heap[0]
                tracked = self._tracked.get(key)
                if tracked is None or tracked.due != due:
                    heapq.heappop(self._heap)  # superseded entry
                    continue
                if due > now:
                    break
                heapq.heappop(self._heap)
                tracked.due = None
                tracked.queued = True
                self._ready.put_nowait((key, tracked))
            self._wakeup.clear()
            self._dispatch_at = self._heap[0][0] if self._heap else float("inf")
            timer = loop.call_later(self._dispatch_at - now, self._wakeup.set) if self._heap else None
            try:
                await self._wakeup.wait()
            finally:
                if timer is not None:
                    timer.cancel()

    async def _run(self, key: Key, tracked: _Tracked) -> None:
        body = tracked.body
        if tracked.verify:
            uid = body["metadata"].get("uid", "")
            if not await self._reconciler.still_exists(key[0], key[1], uid):
                log.info("forgotten: deleted while unwatched", extra={"externalSecret": "/".join(key)})
                self._forget(key)
                return
            tracked.verify = False
        force, tracked.force = tracked.force, False
        max_age = 0.0 if force else tracked.max_age
        try:
            es = parse_external_secret(body)
        except InvalidSpec as exc:
            es = None
            result = await self._reconciler.report_invalid(body, exc)
        if es is not None and not force and _created_once_done(es, tracked):
            return  # CreatedOnce: synced, and its Secret is as written; a spec change does not count
        if es is not None:
            interval = clamped(es.spec.periodic_seconds, self._min_refresh)
            next_refresh = jittered(interval) if interval > 0 else None
            started = time.perf_counter()
            token = tracked.force_token if force else None
            changes = tracked.target_changes
            trusted = not force and self._target_unchanged(tracked)
            result = await self._reconciler.sync(
                es,
                max_age=max_age,
                next_refresh=next_refresh,
                force_token=token,
                trust_target=trusted,
            )
            SYNC_SECONDS.observe(time.perf_counter() - started)
            self._index(key, tracked, result)
            if result.status is not None:
                # The body now, not the one read before the sync: a watch event may have come.
                tracked.body = {**tracked.body, "status": dict(result.status)}
            if result.ok:
                tracked.attempts = 0
                tracked.synced_changes = changes
                if not trusted:
                    tracked.target_checked = (changes, self._clock())
                if next_refresh is not None:
                    self._schedule(key, next_refresh, max_age=interval)
                return
        tracked.attempts += 1
        if es is None:
            self._schedule(key, INVALID_SPEC_RETRY, max_age=0.0)
        else:
            self._schedule(key, backoff(tracked.attempts, result.retry_after), max_age=0.0)

    # Bookkeeping -----------------------------------------------------------------------------

    def _schedule(self, key: Key, delay: float, max_age: float) -> None:
        tracked = self._tracked[key]
        due = self._clock() + max(0.0, delay)
        if tracked.queued or (tracked.due is not None and tracked.due <= due):
            tracked.max_age = min(tracked.max_age, max_age)
            return
        tracked.due = due
        tracked.max_age = max_age
        heapq.heappush(self._heap, (due, next(self._seq), key))
        if due < self._dispatch_at:
            self._wakeup.set()

    def _index(self, key: Key, tracked: _Tracked, result: SyncResult) -> None:
        for pair in _sources_of(tracked.store_key, tracked.remote_keys, tracked.other_sources):
            self._users[pair].discard(key)
        tracked.store_key, tracked.remote_keys = result.store_key, tuple(result.remote_keys)
        tracked.other_sources = tuple(result.other_sources)
        for pair in _sources_of(tracked.store_key, tracked.remote_keys, tracked.other_sources):
            self._users[pair].add(key)

    def _forget(self, key: Key) -> None:
        tracked = self._tracked.pop(key, None)
        TRACKER.forget(key)
        for source in tracked.template_sources if tracked is not None else ():
            self._drop_template_user(source, key)
        if tracked is not None:
            for pair in _sources_of(tracked.store_key, tracked.remote_keys, tracked.other_sources):
                self._users[pair].discard(key)
        QUEUE_DEPTH.set(len(self._tracked))

    def _target_unchanged(self, tracked: _Tracked) -> bool:
        """Nothing but our own writes reached the target since it was last checked, recently."""
        checked = tracked.target_checked
        return (
            checked is not None
            and checked[0] == tracked.target_changes
            and self._clock() - checked[1] < TARGET_RECHECK_SECONDS
        )

    def _refresh(self, tracked: _Tracked) -> float:
        try:
            return clamped(parse_external_secret(tracked.body).spec.periodic_seconds, self._min_refresh)
        except InvalidSpec:
            return 0.0

    def _wall(self) -> float:
        return time.time()

    def _resume_time(self, tracked: _Tracked) -> float | None:
        """Wall-clock time of the next refresh for an object already in sync, else None.

        `inf` means in sync and never refreshed (refreshInterval 0).
        """
        body = tracked.body
        meta = body["metadata"]
        status = body.get("status") or {}
        if status.get("observedGeneration") != meta.get("generation"):
            return None
        token = (meta.get("annotations") or {}).get(c.ANNOTATION_FORCE_SYNC)
        if token is not None and token != status.get("forceSyncHandled"):
            return None
        synced_at = status.get("syncedAt")
        if not is_ready(status) or not synced_at:
            return None
        interval = self._refresh(tracked)
        if interval <= 0:
            return float("inf")
        synced = parse_time(synced_at).timestamp()
        return next_on_grid(synced, jittered(interval), self._wall())


def _pack(body: Mapping[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"))


def _template_sources(namespace: str, body: Mapping[str, Any]) -> frozenset[Source]:
    """The objects an ExternalSecret's templateFrom names, read from the raw body (a spec the
    models refuse indexes nothing harmful: a wrong namespace never matches its own)."""
    template = ((body.get("spec") or {}).get("target") or {}).get("template") or {}
    found: set[Source] = set()
    for entry in template.get("templateFrom") or []:
        for name, kind in (("configMap", "ConfigMap"), ("secret", "Secret")):
            ref = entry.get(name) if isinstance(entry, dict) else None
            if isinstance(ref, dict) and isinstance(ref.get("name"), str):
                found.add((namespace, kind, ref["name"]))
    return frozenset(found) if found else NO_SOURCES


def _periodic(body: Mapping[str, Any]) -> bool:
    """refreshPolicy Periodic: a new remote value seen by a shared read refreshes it too."""
    return bool((body.get("spec") or {}).get("refreshPolicy", "Periodic") == "Periodic")


def _created_once_done(es: ExternalSecret, tracked: _Tracked) -> bool:
    """refreshPolicy CreatedOnce, already synced (its status says so), and no change of its
    Secret by anyone else since: nothing to do, whatever changed in the spec.

    A deleted or edited Secret (the Secret watch, or the startup check of resumed objects,
    counted it) is synced again, as External Secrets Operator does."""
    return (
        es.spec.refresh_policy == "CreatedOnce"
        and bool(es.status.get("syncedAt"))
        and tracked.target_changes == tracked.synced_changes
    )


def _store_of(key: Key, body: Mapping[str, Any]) -> str:
    """The store an ExternalSecret names, as one bulkhead: a ClusterSecretStore is one for
    every namespace using it. Without `spec.storeRef`, the first entry's `sourceRef` store."""
    ref = next(iter(store_refs(body.get("spec") or {})), {})
    kind = ref.get("kind") or c.KIND_SECRET_STORE
    where = key[0] if kind == c.KIND_SECRET_STORE else ""
    return f"{kind}/{where}/{ref.get('name')}"


def _sources_of(
    store_key: str | None, remote_keys: tuple[str, ...], others: tuple[tuple[str, str], ...]
) -> set[tuple[str, str]]:
    """Every (store, remote key) a sync read: a rotation of any of them refreshes it."""
    first = {(store_key, remote) for remote in remote_keys} if store_key is not None else set()
    return first | set(others)
