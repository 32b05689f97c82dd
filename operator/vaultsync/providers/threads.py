"""Each store's blocking SDK calls run on threads of its own (a bulkhead).

hvac and boto3 block; they run off the event loop in threads. A thread stuck in a
blocking read (an endpoint that answers one byte every few seconds defeats a per-read
timeout) cannot be cancelled: awaiting it can be abandoned, the thread stays busy. With
one pool shared by every store, a tenant's slow endpoint would fill it and stall every
other store's reads. Each store client owns a small pool, so a store that hangs only
exhausts its own threads; its callers wait (and time out) alone.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from vaultsync.constants import STORE_THREADS

T = TypeVar("T")


class StoreThreads:
    """A store client's own small thread pool; closed with the client."""

    def __init__(self, name: str, size: int = STORE_THREADS) -> None:
        self._pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix=f"vaultsync-{name}")

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args))

    def close(self) -> None:
        """Queued calls are dropped; a thread stuck in a read ends with its SDK timeout."""
        self._pool.shutdown(wait=False, cancel_futures=True)
