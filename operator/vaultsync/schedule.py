"""When things happen: Go-style durations, jittered refresh times and error backoff.

Refreshes are spread so that a thousand ExternalSecrets with the same interval
never hit the vault in the same second, and failures back off exponentially
with jitter so a vault outage is not made worse by a thundering herd.
"""

from __future__ import annotations

import random
import re

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}

JITTER_FRACTION = 0.1
# A tenant's refreshInterval is clamped up to the floor (--min-refresh-interval), so a
# "5ms" cannot turn the operator into a load generator against a shared vault, and
# refused above the ceiling, so "99999999999h" cannot overflow a timestamp.
MIN_REFRESH_SECONDS = 10.0
MAX_REFRESH_SECONDS = 366 * 24 * 3600.0
MAX_REFRESH_TEXT = "8784h (366 days)"
BACKOFF_BASE_SECONDS = 5.0
BACKOFF_MAX_SECONDS = 300.0


def parse_duration(text: str) -> float:
    """Seconds in a Go duration (`30s`, `5m`, `1h30m`, `0`); `ValueError` otherwise."""
    text = text.strip()
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(text):
        raise ValueError("must be a duration such as 30s, 5m, 1h30m, or 0 to sync once")
    return total


def refresh_interval(text: str) -> float:
    """Seconds of a `refreshInterval`, refused above the ceiling (and when infinite)."""
    seconds = parse_duration(text)
    if not seconds <= MAX_REFRESH_SECONDS:  # also catches inf and nan
        raise ValueError(f"must be at most {MAX_REFRESH_TEXT}, or 0 to sync once")
    return seconds


def clamped(interval: float, floor: float) -> float:
    """The interval actually used: 0 stays 0 (sync once), anything shorter than `floor` is `floor`."""
    return 0.0 if interval <= 0 else max(interval, floor)


def jittered(interval: float, rng: random.Random | None = None) -> float:
    """`interval` stretched by up to +10%, so equal intervals drift apart, never together."""
    r = rng or random
    return interval * (1.0 + JITTER_FRACTION * r.random())


def backoff(attempt: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
    """Delay before retry number `attempt` (1-based): exponential, capped, full jitter.

    A server's own Retry-After is a floor, never shortened.
    """
    r = rng or random
    ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** min(max(0, attempt - 1), 16))
    delay = ceiling / 2 + r.random() * ceiling / 2
    return float(max(delay, retry_after or 0.0))


def next_on_grid(synced_at: float, interval: float, now: float) -> float:
    """The first refresh after `now` on the grid `synced_at + k * interval`.

    Used after an operator restart: the schedule resumes where it would have
    been, so objects that are not due are not read again.
    """
    if synced_at > now:
        return synced_at
    periods = int((now - synced_at) // interval) + 1
    return synced_at + periods * interval
