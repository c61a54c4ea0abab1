"""Keep big CPU work (base64, JSON, PNG of large batches) off the event loop; small work stays inline,
where a thread hop would cost more than the work."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from starlette.concurrency import run_in_threadpool

T = TypeVar("T")

INLINE_BYTES = 256 * 1024


async def run_sized(size: int, fn: Callable[..., T], *args: object) -> T:
    """Run ``fn(*args)`` inline when it handles fewer than INLINE_BYTES, else in the thread pool."""
    if size < INLINE_BYTES:
        return fn(*args)
    return await run_in_threadpool(fn, *args)
