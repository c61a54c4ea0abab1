"""How a failure becomes a gRPC status: ServiceErrors through the one table, anything else INTERNAL.

Unary handlers are wrapped by `guarded`; streams report per-message failures in-band with `status_of`, so one
bad image does not end a long batch job.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import NoReturn, TypeVar

import grpc

from ..context import current
from ..errors import ServiceError, mapping_for

log = logging.getLogger(__name__)

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Self = TypeVar("Self")

INTERNAL_MESSAGE = "internal error; the server log has the details"


def status_of(error: Exception, method: str) -> tuple[grpc.StatusCode, str]:
    """The code and client-facing message for an error; unexpected ones are logged, their text is not shown."""
    if isinstance(error, ServiceError):
        return mapping_for(error).grpc_code, error.message
    log.error("unexpected error in %s", method, exc_info=error)
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE


async def abort(context: grpc.aio.ServicerContext, error: Exception, method: str) -> NoReturn:
    code, message = status_of(error, method)
    if isinstance(error, ServiceError) and error.retry_after is not None:
        # grpc-retry-pushback-ms is gRPC's own (a channel's retry policy waits that long); retry-after, in seconds,
        # is what pixelserve clients read before it.
        trailing = [
            ("retry-after", f"{error.retry_after:g}"),
            ("grpc-retry-pushback-ms", str(round(error.retry_after * 1000))),
        ]
        if (ctx := current.get()) is not None:  # set_trailing_metadata replaces what the edge's hooks set
            trailing.extend(ctx.trailers)
        context.set_trailing_metadata(tuple(trailing))
    try:
        await context.abort(code, message)
    except grpc.aio.AbortError:
        raise
    except Exception as gone:  # grpc's ExecuteBatchError: the client cancelled or left before the status went out
        raise asyncio.CancelledError("the call ended before its status could be sent") from gone
    raise AssertionError("context.abort returned")  # abort always raises; this keeps type checkers honest


def guarded(
    handler: Callable[[Self, Req, grpc.aio.ServicerContext], Awaitable[Resp]],
) -> Callable[[Self, Req, grpc.aio.ServicerContext], Awaitable[Resp]]:
    """Wrap a unary servicer method so every error ends the call with its mapped status, never a crash."""

    @functools.wraps(handler)
    async def wrapper(self: Self, request: Req, context: grpc.aio.ServicerContext) -> Resp:
        try:
            return await handler(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as error:  # the boundary: every error becomes a status
            await abort(context, error, handler.__qualname__)

    return wrapper


async def ordered_map(
    requests: AsyncIterator[Req], handle: Callable[[Req], Awaitable[Resp]], window: int
) -> AsyncIterator[Resp]:
    """Handle stream messages concurrently (so the batcher sees them together) but answer in request order.

    At most `window` messages are in flight, so a fast sender cannot make the server buffer a whole job.
    `handle` must turn failures into responses itself; an exception here ends the stream.
    """
    slots = asyncio.Semaphore(max(1, window))
    queue: asyncio.Queue[asyncio.Future[Resp] | None] = asyncio.Queue()

    async def read() -> None:
        try:
            async for request in requests:
                await slots.acquire()
                queue.put_nowait(asyncio.ensure_future(handle(request)))
        finally:
            queue.put_nowait(None)

    reader = asyncio.ensure_future(read())
    try:
        while (pending := await queue.get()) is not None:
            try:
                yield await pending
            finally:
                slots.release()
        await reader
    finally:
        reader.cancel()
        while not queue.empty():
            leftover = queue.get_nowait()
            if leftover is not None:
                leftover.cancel()
