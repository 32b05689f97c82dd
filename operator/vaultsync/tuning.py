"""kopf's settings for vaultsync, each chosen on purpose (and measured where it says so).

- kopf posts no Events of its own (ours say what happened to the Secret);
- Secrets are watched whole (restarts for Secrets vaultsync does not manage need their
  changes: unmanaged.py), but nothing of a Secret is kept except, for the ones a workload
  names, a digest; kopf caches no bodies;
- the initial listing comes in pages of 500, and kopf's per-object workers exit
  0.1 s after their last event, which keeps the memory peak low;
- only `on.event` handlers are used, so kopf never writes its bookkeeping
  annotations or finalizers onto Secrets, workloads or ExternalSecrets.

Kept apart from the wiring so the framework's knobs are read in one place.
"""

from __future__ import annotations

from collections.abc import Iterable

import kopf

from vaultsync import constants as c


class _NoDiffBase(kopf.DiffBaseStorage):
    """kopf deep-copies every event's body to diff it for change handlers; we have none.

    With only `on.event` handlers the diff is never used, and skipping it saves a deep
    copy per watch event (about a third of kopf's CPU at ten thousand objects).
    """

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[kopf.FieldSpec] | None = None
    ) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def tune(settings: kopf.OperatorSettings) -> None:
    settings.posting.enabled = False
    settings.persistence.finalizer = f"{c.GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.KOPF_PERSISTENCE_PREFIX)
    settings.persistence.diffbase_storage = _NoDiffBase()
    settings.watching.server_timeout = 300
    # The initial list in pages, not one response with every object decoded at once:
    # the peak of that decode stays in the process as fragmented memory.
    settings.watching.chunk_size = 500
    settings.networking.request_timeout = 60
    # kopf keeps a worker (task, queue, last body) per object for `idle_timeout` after its
    # last event; its default of 5 s holds one for every object during the initial listing,
    # and that peak stays as fragmented memory: 161 -> 91 MiB RSS at 3,000 ExternalSecrets
    # with 0.1 s. Our handlers only hand the event over, so a worker has nothing to wait for.
    settings.queueing.idle_timeout = 0.1
