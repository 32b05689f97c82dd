"""One ExternalSecret, once: resolve the store → fetch → plan → apply the plan.

This is the whole product in one function. It never deletes or empties a
Secret because a provider failed (fail static), never writes when nothing
changed (no churn, no spurious rollouts), and reports every failure as the one
`Ready` condition with a reason and a message naming the field at fault.
What to write is decided by `plan.py` without side effects; this module only
fetches, applies the plan in a crash-safe order (see `Reconciler.sync`) and
hands a rotation to the rollouts. The scheduler decides *when* this runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, cast

from vaultsync import constants as c
from vaultsync.cache import FetchCache
from vaultsync.constants import Reason
from vaultsync.errors import (
    AuthenticationError,
    InvalidSpec,
    KubeConflict,
    KubeNotFound,
    SecretNotFound,
    StoreTimeout,
    VaultsyncError,
)
from vaultsync.events import EventSink
from vaultsync.finder import find_all
from vaultsync.fingerprints import data_hmac, namespace_key
from vaultsync.kube import Body, Kube, ObjectRef
from vaultsync.metrics import SECRET_WRITES, SYNCS
from vaultsync.models import ExternalSecret, StoreRef, TemplateSpec
from vaultsync.plan import (
    Report,
    SecretWrite,
    SyncResult,
    check_bounds,
    plan_invalid,
    plan_removal,
    plan_report,
    plan_write,
    stored,
)
from vaultsync.providers.base import RemoteRef, RemoteValue
from vaultsync.renderer import TemplateRenderer
from vaultsync.storeclients import ResolvedStore
from vaultsync.stores import Stores
from vaultsync.targets import every_key_gone
from vaultsync.templatefrom import (
    Rendered,
    assemble,
    collect,
    renders_metadata,
    template_objects,
    with_metadata,
)
from vaultsync.templating import build_data, refs_by_store, sandboxed_transform, source_field

log = logging.getLogger(__name__)

# (namespace, Secret, fingerprint, ExternalSecret, urgent)
RotationListener = Callable[[str, str, str, ObjectRef, bool], Awaitable[None]]


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        stores: Stores,
        cache: FetchCache,
        hmac_key: bytes,
        renderer: TemplateRenderer,
        *,
        events: EventSink,
        on_rotated: RotationListener | None = None,
        sync_timeout: float = c.SYNC_TIMEOUT_SECONDS,
    ) -> None:
        self._sync_timeout = sync_timeout
        self._kube = kube
        self._events = events
        self._stores = stores
        self._cache = cache
        self._renderer = renderer
        self._key = hmac_key
        self._on_rotated = on_rotated

    async def sync(
        self,
        es: ExternalSecret,
        *,
        max_age: float,
        next_refresh: float | None,
        force_token: str | None,
        trust_target: bool = False,
    ) -> SyncResult:
        """Brings the target Secret in line with the vault; never raises for vault, spec or
        Kubernetes errors (each is the Ready condition), only when the status cannot be written.

        The plan is applied in this order, each step recoverable if the process dies after it:
        1. the Secret, with its fingerprint and, for a rotation, the pending-restart mark in the
           same write: dead here, the next start lists the marked Secret and resumes the
           restart, and the next sync finds the data in place (no second write);
        2. the rotation handed to the rollouts (before the status, so a refused status write
           cannot lose it; the mark is cleared once every workload is patched);
        3. the status: dead before it, the status still describes the previous sync (or
           generation), so the scheduler reconciles again at once at the next start;
        4. the Event, best effort.

        `trust_target`: the Secret watch saw no change since the target was last checked, so
        when the data is what the status says was written, the Secret need not be read again.
        A Merge target carries no vaultsync labels, so the watch never sees it: always read.
        """
        trust_target = trust_target and es.spec.target.creation_policy != "Merge"
        # Rendered labels and annotations are not in the fingerprint: compare them on the Secret.
        trust_target = trust_target and not renders_metadata(es.spec.target.template)
        resolved: ResolvedStore | None = None
        resolving: StoreRef | None = None  # the store being logged in to or read
        read: list[tuple[str, str]] = []  # (store cache key, remote key), in order
        found: dict[int, tuple[str, ...]] = {}  # dataFrom index → what its find matched
        versions: dict[str, str] = {}
        fingerprint: str | None = None
        write = SecretWrite("none")
        fetched: dict[StoreRef, Mapping[RemoteRef, RemoteValue | VaultsyncError]] = {}
        try:
            deadline = asyncio.timeout(self._sync_timeout)
            try:
                async with deadline:
                    # Each store with the namespace's own permissions: an entry's sourceRef
                    # naming a store the namespace may not use is refused, naming that entry.
                    # A store's find entries are listed first (once per store), then every
                    # value read from it, found keys included, in one cache lookup.
                    for store_ref in refs_by_store(es.spec):
                        resolving, resolved = store_ref, None
                        field = source_field(es.spec, store_ref)
                        resolved = await self._stores.for_namespace(es.namespace, store_ref, field)
                        try:
                            found |= await find_all(
                                self._cache,
                                resolved.cache_key,
                                resolved.provider,
                                resolved.client,
                                es.spec,
                                max_age,
                                store_ref,
                                counted=sum(map(len, found.values())),
                            )
                        except SecretNotFound:
                            # A find matching nothing never deletes the Secret (finder.py),
                            # even when every key of the stores read before is gone.
                            fetched.clear()
                            raise
                        refs = refs_by_store(es.spec, found)[store_ref]
                        read += [(resolved.cache_key, r.key) for r in refs]
                        fetched[store_ref] = await self._cache.get(
                            resolved.cache_key,
                            resolved.provider,
                            resolved.client,
                            refs,
                            max_age,
                            context=resolved.context,
                            requested_by=f"{es.namespace}/{es.name}",
                        )
            except TimeoutError:
                if not deadline.expired():
                    raise
                # `resolving` is set before the first await, the only place a deadline passes.
                raise StoreTimeout(self._timed_out(es, cast(StoreRef, resolving), resolved)) from None
            transform = sandboxed_transform(self._renderer, es.namespace)
            data, versions = await build_data(
                es.spec,
                fetched.get(es.spec.store_ref, {}) if es.spec.store_ref else {},
                fetched,
                found=found,
                transform=transform,
            )
            template = es.spec.target.template
            planned = es
            if template is not None and template.renders:
                rendered = await self._render(es, template, data)
                data, planned = rendered.data, with_metadata(es, rendered)
            fingerprint = data_hmac(namespace_key(self._key, es.namespace), data)
            check_bounds(planned, data, fingerprint)
            if not (trust_target and fingerprint == es.status.get("dataHMAC")):
                write = await self._write(planned, data, fingerprint)
            stores = str(resolved.context) if resolved and len(fetched) == 1 else f"{len(fetched)} stores"
            result = SyncResult(
                Reason.SYNCED,
                f"Secret {es.target_name} is in sync with {stores}",
                written=write.action != "none",
                **_sources(read),
            )
        except VaultsyncError as exc:
            every = {(s, r): v for s, values in fetched.items() for r, v in values.items()}
            result = await self._failed(es, exc, resolved, every, read)
        SYNCS.labels(reason=result.reason.value).inc()
        if write.rotated and fingerprint and self._on_rotated is not None:
            # Before the status and Event: a refused status write must not lose the restart.
            urgent = (force_token or "").startswith(c.FORCE_SYNC_URGENT_PREFIX)
            await self._on_rotated(es.namespace, es.target_name, fingerprint, self._ref(es), urgent)
        report = plan_report(
            es.status,
            es.generation,
            result,
            versions,
            fingerprint,
            force_token,
            next_refresh,
            es.target_name,
            datetime.now(UTC),
        )
        status = await self._apply_report(es.namespace, es.name, self._ref(es), report)
        self._log(es, result, report)
        return result if status is None else _with_status(result, status)

    async def _failed(
        self,
        es: ExternalSecret,
        exc: VaultsyncError,
        resolved: ResolvedStore | None,
        fetched: Mapping[Any, RemoteValue | VaultsyncError],
        read: list[tuple[str, str]],
    ) -> SyncResult:
        if isinstance(exc, AuthenticationError) and resolved is not None:
            # The store's login was refused: its shared client is rebuilt (after a
            # backoff). A denied or missing key (PermissionDenied, SecretNotFound) is this
            # ExternalSecret's condition only and leaves the client to the others.
            await self._stores.invalidate(resolved)
        message = exc.message
        reason = exc.reason
        if isinstance(exc, SecretNotFound) and es.spec.target.deletion_policy == "Delete":
            if every_key_gone(fetched):
                try:
                    await self._remove(es.name, es.spec.target.creation_policy, es.namespace, es.target_name)
                except VaultsyncError as removal:
                    reason = removal.reason
                    message += f"; the Secret was not deleted: {removal.message}"
            else:
                message += "; deletionPolicy Delete keeps the Secret until every remote key is gone"
        return SyncResult(reason, message, retry_after=getattr(exc, "retry_after", None), **_sources(read))

    async def _render(self, es: ExternalSecret, template: TemplateSpec, data: dict[str, bytes]) -> Rendered:
        """The template over the fetched data, its templateFrom objects read now (a change of
        one reaches the scheduler through the watch: `Scheduler.template_source_changed`)."""
        objects: dict[tuple[str, str], Body | None] = {}
        for kind, name in template_objects(template):
            read = self._kube.read_configmap if kind == "ConfigMap" else self._kube.read_secret
            try:
                objects[(kind, name)] = await read(es.namespace, name)
            except KubeNotFound:
                objects[(kind, name)] = None
        sources = collect(template, objects, es.namespace)
        rendered = await self._renderer.render_sources(es.namespace, template.delimiters, sources, data)
        return assemble(template, sources, rendered, data)

    def _timed_out(self, es: ExternalSecret, ref: StoreRef, resolved: ResolvedStore | None) -> str:
        where = f"{es.namespace}/" if ref.kind == c.KIND_SECRET_STORE else ""
        store = str(resolved.context) if resolved else f"{ref.kind} {where}{ref.name}"
        step = "reading" if resolved else "logging in to"
        return (
            f"{source_field(es.spec, ref)}: {store} did not answer within {self._sync_timeout:g} s "
            f"({step} the store; --sync-timeout); the Secret is left as it is"
        )

    async def still_exists(self, namespace: str, name: str, uid: str) -> bool:
        """The ExternalSecret is still there, as the same object (uid), per a fresh GET.

        Asked before writing for an object whose target Secret was deleted: after a watch gap
        the Secret may be gone because its Owner was deleted and garbage-collected, and
        writing it again would only feed the collector a loop. Any other error: assume yes.
        """
        try:
            body = await self._kube.read_custom(c.EXTERNAL_SECRETS, namespace, name)
        except KubeNotFound:
            return False
        except VaultsyncError:
            return True
        return bool(body["metadata"].get("uid") == uid)

    async def report_invalid(self, body: Mapping[str, Any], error: InvalidSpec) -> SyncResult:
        """An ExternalSecret whose spec cannot be parsed: say which field, touch nothing else."""
        meta = body["metadata"]
        result = SyncResult(Reason.INVALID_SPEC, error.message)
        old: Mapping[str, Any] = body.get("status") or {}
        report = plan_invalid(old, meta.get("generation", 0), result, datetime.now(UTC))
        ref = ObjectRef(c.API_VERSION, c.KIND_EXTERNAL_SECRET, meta["namespace"], meta["name"], meta["uid"])
        status = await self._apply_report(meta["namespace"], meta["name"], ref, report)
        SYNCS.labels(reason=result.reason.value).inc()
        return result if status is None else _with_status(result, status)

    # Writing the Secret --------------------------------------------------------------------

    async def _write(self, es: ExternalSecret, data: Mapping[str, bytes], fingerprint: str) -> SecretWrite:
        """Plans and applies the Secret write; returns what was done.

        A first sync plans a create without reading first (one request instead of two,
        which matters for ten thousand objects); an existing Secret answers 409, and the
        write is planned again from the Secret as read.
        """
        if es.spec.target.creation_policy != "Merge" and not es.status.get("dataHMAC"):
            write = plan_write(es, None, data, fingerprint)
            try:
                await self._apply_write(es, write)
            except KubeConflict:
                pass
            else:
                return write
        try:
            existing: Body | None = await self._kube.read_secret(es.namespace, es.target_name)
        except KubeNotFound:
            existing = None
        write = plan_write(es, existing, data, fingerprint)
        await self._apply_write(es, write)
        return write

    async def _apply_write(self, es: ExternalSecret, write: SecretWrite) -> None:
        name, namespace = es.target_name, es.namespace
        if write.action == "none" or write.body is None:
            return
        if write.action == "create":
            await self._kube.create_secret(namespace, write.body)
        elif write.action == "recreate":
            # The type is immutable. Dead between the two, the status still describes the
            # previous generation: the next start reconciles at once and creates the Secret.
            assert write.existing_uid is not None
            await self._kube.delete_secret(namespace, name, write.existing_uid)
            await self._kube.create_secret(namespace, write.body)
        else:
            try:
                await self._kube.replace_secret(namespace, name, write.body)
            except KubeConflict:
                raise KubeConflict(
                    f"update secrets: Secret {namespace}/{name} changed while being written; retrying"
                ) from None
        SECRET_WRITES.labels(operation=write.action).inc()

    async def _remove(self, es_name: str, creation_policy: str, namespace: str, name: str) -> None:
        try:
            existing: Body | None = await self._kube.read_secret(namespace, name)
        except KubeNotFound:
            existing = None
        removal = plan_removal(es_name, creation_policy, existing)
        if removal.action == "delete" and removal.uid is not None:
            await self._kube.delete_secret(namespace, name, removal.uid)
            SECRET_WRITES.labels(operation="delete").inc()
        elif removal.action == "update" and removal.body is not None:
            await self._kube.replace_secret(namespace, name, removal.body)
            SECRET_WRITES.labels(operation="update").inc()

    async def released(self, body: Mapping[str, Any]) -> None:
        """A deleted ExternalSecret with creationPolicy Merge takes back the keys it wrote; the
        Secret, its type, labels and other keys stay. (Owner targets go by garbage collection,
        Orphan targets stay.) Without a finalizer this is best effort: deleted while the
        operator is down, the keys stay, as in External Secrets Operator."""
        meta = body["metadata"]
        target = (body.get("spec") or {}).get("target") or {}
        if target.get("creationPolicy") != "Merge":
            return
        await self._remove(meta["name"], "Merge", meta["namespace"], target.get("name") or meta["name"])

    # Status and Events ---------------------------------------------------------------------

    async def _apply_report(
        self, namespace: str, name: str, ref: ObjectRef, report: Report
    ) -> dict[str, Any] | None:
        """Writes the planned status, then posts the planned Event; returns the status as
        stored (None: not written)."""
        written: dict[str, Any] | None = None
        if report.status is not None:
            try:
                await self._kube.patch_status(c.EXTERNAL_SECRETS, namespace, name, report.status)
            except KubeNotFound:
                return None  # deleted meanwhile
            written = stored(report.status)
        if report.event is not None:
            event = report.event
            await self._events.post_event(ref, event.type, event.reason, event.message)
        return written

    def _ref(self, es: ExternalSecret) -> ObjectRef:
        return ObjectRef(c.API_VERSION, c.KIND_EXTERNAL_SECRET, es.namespace, es.name, es.uid)

    def _log(self, es: ExternalSecret, result: SyncResult, report: Report) -> None:
        log.log(
            # Writes and new failures are news; a refresh that changed nothing, or the same
            # failure retried, is not (ten thousand objects would drown the log).
            logging.INFO if report.news else logging.DEBUG,
            "synced" if result.ok else "sync failed",
            extra={
                "externalSecret": f"{es.namespace}/{es.name}",
                "reason": result.reason.value,
                "detail": result.message,
                "written": result.written,
            },
        )


def _sources(read: list[tuple[str, str]]) -> dict[str, Any]:
    """The SyncResult fields saying which remote keys of which stores a sync reads (the
    scheduler refreshes it when one of them rotates): the first store's, and the others'."""
    if not read:
        return {}
    first = read[0][0]
    return {
        "store_key": first,
        "remote_keys": frozenset(key for store, key in read if store == first),
        "other_sources": frozenset(pair for pair in read if pair[0] != first),
    }


def _with_status(result: SyncResult, status: Mapping[str, Any]) -> SyncResult:
    return SyncResult(
        result.reason,
        result.message,
        retry_after=result.retry_after,
        written=result.written,
        store_key=result.store_key,
        remote_keys=result.remote_keys,
        other_sources=result.other_sources,
        status=status,
    )
