"""What a watch's re-list no longer contains: objects deleted while the watch was away.

kopf resumes a broken watch from its last resourceVersion, but after a long gap the API
server answers 410 Gone and kopf lists again. Objects deleted during the gap are simply
absent from that list; no DELETED event is ever delivered for them, so the scheduler and
the store mirror would keep them for good.

kopf reports listed objects as events of type None. This module notices when such a
listing of a kind begins and, once none has arrived for `quiet` seconds (the listing is
over), hands the keys seen since to a callback, which compares them with what it holds.
Absence from a listing is only a suspicion (a slow, paged list could be taken for over):
the callbacks confirm each candidate with a GET before dropping it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Hashable
from typing import Any

from vaultsync.errors import crash_fields

log = logging.getLogger(__name__)

Listed = Callable[[set[Hashable]], Coroutine[Any, Any, None]]


class Listings:
    """One kind's listings: `observe` every event's key, `done` runs after each listing."""

    def __init__(self, quiet: float, done: Listed) -> None:
        self._quiet = quiet
        self._done = done
        self._seen: set[Hashable] | None = None  # keys seen since the current listing began
        self._listed: set[Hashable] = set()  # of those, the ones listed
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def observe(self, key: Hashable, listed: bool) -> None:
        """Any event of the kind (`listed`: of type None, part of a listing).

        An object listed twice means a new listing began: the previous one is complete.
        """
        if listed and key in self._listed:
            self._over()
        if listed and self._seen is None:
            self._seen = set()
        if self._seen is None:
            return
        self._seen.add(key)
        if listed:
            self._listed.add(key)
            if self._timer is not None:
                self._timer.cancel()
            self._timer = asyncio.get_running_loop().call_later(self._quiet, self._over)

    def _over(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        seen, self._seen, self._timer, self._listed = self._seen or set(), None, None, set()
        task = asyncio.get_running_loop().create_task(self._run(seen))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, seen: set[Hashable]) -> None:
        try:
            await self._done(seen)
        except Exception as exc:
            log.error("checking a listing crashed", extra=crash_fields(exc))

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
