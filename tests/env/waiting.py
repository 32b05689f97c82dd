"""Wait for a cluster to converge without sleeping a guessed amount of time.

Controllers act asynchronously, so end-to-end tests poll a condition until a deadline and,
when it is missed, fail with what they were waiting for and what they last saw.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DEFAULT_TIMEOUT_SECONDS = 60.0


class NotYet(AssertionError):
    """Raised by a check to say "not converged yet", with what it saw."""


def eventually(
    check: Callable[[], T],
    *,
    what: str,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    interval: float = 0.25,
) -> T:
    """Call `check` until it returns without raising AssertionError; return its result.

    A check signals "not yet" with a failing `assert` or `raise NotYet(...)`; any other
    exception is a real error and propagates at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError as exc:
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"timed out after {timeout:.0f}s waiting for {what}; last seen: {exc}"
                ) from exc
        time.sleep(interval)
