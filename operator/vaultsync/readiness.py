"""Ready and stale ExternalSecrets, as metrics, from the statuses the watch reports.

The scheduler hands every ExternalSecret event here. From it come the count of Ready
ExternalSecrets (`vaultsync_external_secrets_ready`), the count of those failing for at
least 1, 3 or 10 of their refresh intervals (`vaultsync_external_secrets_stale`: since
a failing sync keeps the Secret's last data, these are the Secrets growing stale), and,
only when asked for (`--external-secret-metrics`), one series per ExternalSecret, capped by
`--external-secret-metrics-max-series` so that ten thousand objects cannot become ten
thousand series unless the operator's owner says so.

Failing since = the `lastTransitionTime` of `Ready=False`, which the operator moves only
when Ready flips, so it is the start of the failure.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from vaultsync import constants as c
from vaultsync.metrics import EXTERNAL_SECRET_READY, EXTERNAL_SECRET_READY_UNTRACKED, READY, STALE
from vaultsync.schedule import MIN_REFRESH_SECONDS, clamped, refresh_interval

Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class _State:
    ready: bool
    failing_since: float | None  # wall-clock seconds
    interval: float  # seconds; 0 = synced once, never stale


# Every Ready ExternalSecret shares this one state, and namespaces are interned: at ten
# thousand objects a state and a namespace string each were 2 MiB (tracemalloc).
_READY = _State(True, None, 0.0)


class Readiness:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._states: dict[Key, _State] = {}
        self._ready = 0  # kept as events come: ten thousand objects listed at start stay O(n)
        self._series: set[Key] = set()  # always a subset of the keys of _states
        self.per_object = False
        self.max_series = c.EXTERNAL_SECRET_METRICS_MAX_SERIES
        self.min_refresh = MIN_REFRESH_SECONDS

    def configure(self, per_object: bool, max_series: int, min_refresh: float) -> None:
        self.per_object, self.max_series, self.min_refresh = per_object, max(0, max_series), min_refresh

    def observe(self, key: Key, body: Mapping[str, Any]) -> None:
        status = body.get("status") or {}
        conditions = status.get("conditions") or []
        ready = next((x for x in conditions if x.get("type") == c.CONDITION_READY), None)
        if ready is None:  # not acted on yet: neither ready nor failing
            self.forget(key)
            return
        is_ready = ready.get("status") == "True"
        previous = self._states.get(key)
        self._ready += is_ready - (previous is not None and previous.ready)
        if previous is None:
            key = (sys.intern(key[0]), key[1])
        self._states[key] = (
            _READY
            if is_ready
            else _State(False, _timestamp(ready.get("lastTransitionTime")), self._interval(body))
        )
        self._publish(key)

    def forget(self, key: Key) -> None:
        previous = self._states.pop(key, None)
        if previous is not None:
            self._ready -= previous.ready
            self._publish(key)

    def ready(self) -> int:
        return self._ready

    def stale(self, intervals: int) -> int:
        now = self._clock()
        return sum(
            1
            for s in self._states.values()
            if s.failing_since is not None
            and s.interval > 0
            and now - s.failing_since >= intervals * s.interval
        )

    def _interval(self, body: Mapping[str, Any]) -> float:
        try:
            return clamped(
                refresh_interval(str((body.get("spec") or {}).get("refreshInterval", "1h"))), self.min_refresh
            )
        except ValueError:
            return 0.0

    def _publish(self, key: Key) -> None:
        READY.set(self.ready())
        if not self.per_object:
            return
        state = self._states.get(key)
        if state is None:
            if key in self._series:
                self._series.discard(key)
                EXTERNAL_SECRET_READY.remove(*key)
        elif key in self._series or len(self._series) < self.max_series:
            self._series.add(key)
            EXTERNAL_SECRET_READY.labels(*key).set(1 if state.ready else 0)
        EXTERNAL_SECRET_READY_UNTRACKED.set(len(self._states) - len(self._series))


def _timestamp(text: Any) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _stale_counter(tracker: Readiness, intervals: int) -> Callable[[], float]:
    return lambda: tracker.stale(intervals)


TRACKER = Readiness()
for _intervals in c.STALE_INTERVALS:
    STALE.labels(intervals=str(_intervals)).set_function(_stale_counter(TRACKER, _intervals))
