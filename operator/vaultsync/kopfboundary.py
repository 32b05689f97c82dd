"""Where vaultsync's errors become kopf's: the one module that translates between them.

`errors.py` knows nothing of kopf, so providers and services do not depend on the
framework that delivers events. kopf, though, decides from an exception's class
whether a handler is retried: a `kopf.TemporaryError` (after its delay), a
`kopf.PermanentError` never. Every kopf registration goes through `translated`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

import kopf

from vaultsync.errors import PermanentError, RetryableError, VaultsyncError

P = ParamSpec("P")
T = TypeVar("T")
# kopf's own default for a TemporaryError without a delay.
DEFAULT_DELAY_SECONDS = 60.0


def kopf_error(exc: VaultsyncError) -> kopf.TemporaryError | kopf.PermanentError:
    """kopf's signal for `exc`: permanent for a `PermanentError`, else temporary (with the
    server's Retry-After when it gave one)."""
    if isinstance(exc, PermanentError):
        return kopf.PermanentError(exc.message)
    delay = exc.retry_after if isinstance(exc, RetryableError) and exc.retry_after else None
    return kopf.TemporaryError(exc.message, delay=delay or DEFAULT_DELAY_SECONDS)


def translated(handler: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """`handler`, raising kopf's errors where it raised vaultsync's."""

    @functools.wraps(handler)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await handler(*args, **kwargs)
        except VaultsyncError as exc:
            raise kopf_error(exc) from None

    return wrapper
