"""The one rule for CPU work that could stall the event loop, and the one thread pool it moves to.

Decoding images, parsing and writing big bodies and encoding PNGs hold the loop for as long as they take, and
every other client (health probes included) waits meanwhile. Small work stays inline, where a thread hop costs
more than the work itself; work over `inline_limit` units (bytes, or decoded pixels for images) goes to the
pool. Compute has its own threads, in the batcher.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

INLINE_LIMIT = 256 * 1024


class Offloader:
    def __init__(self, threads: int = 0, inline_limit: int = INLINE_LIMIT) -> None:
        self.inline_limit = inline_limit
        workers = threads or min(8, (os.cpu_count() or 1) + 2)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pixelserve-cpu")

    async def sized(self, size: int, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` inline when its work is under the limit, else on the pool."""
        if size < self.inline_limit:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def always(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` on the pool, for work whose size is unknown until it is done (inflating a body)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
