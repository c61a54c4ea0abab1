"""Undecodable protobuf is the client's error: INVALID_ARGUMENT with a plain message, never UNKNOWN.

grpc deserialises a request before the handler runs, and a DecodeError there ends the call as UNKNOWN with
the exception's Python class in the details. The guarded handlers take the raw bytes instead and
parses them itself, so a corrupt message (unary, or any message of a stream) answers INVALID_ARGUMENT through
the error table, like every other bad input. The handlers are wrapped once, when they are registered.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from ..errors import InvalidInput, mapping_for

Parse = Callable[[bytes], Any]
# Runs fn(*args) for work of `size` bytes: inline when small, on a thread when it would hold the event loop
# (the core's Offloader.sized).
Offload = Callable[..., Awaitable[Any]]
Behavior = Callable[[Any, grpc.aio.ServicerContext], Any]
# Wraps a method's behaviour (method name, response streaming) at registration: tracing, the access log.
Wrapper = Callable[[Behavior, str, bool], Behavior]


def _invalid(method: str) -> tuple[grpc.StatusCode, str]:
    message = f"the request is not a valid protobuf message for {method}"
    return mapping_for(InvalidInput(message)).grpc_code, message


def _parse(parse: Parse, raw: bytes) -> Any:
    try:
        return parse(raw)
    except DecodeError:
        return _CORRUPT


_CORRUPT = object()

# The size of the request message being handled, as it arrived: servicers decide from it whether converting
# the message moves off the event loop. (upb's ByteSize() serialises the whole message again to count it,
# which for a 16 MB message holds the loop for tens of milliseconds.) A stream sets it for each message before
# yielding it, so a task started for that message copies it.
_received: ContextVar[int] = ContextVar("pixelserve_grpc_received_bytes", default=0)


def received_bytes() -> int:
    """The wire size of the request message this call (or stream message) is handling; 0 outside a call."""
    return _received.get()


async def _inline(_size: int, fn: Callable[..., Any], *args: object) -> Any:
    return fn(*args)


def _guard(handler: grpc.RpcMethodHandler, method: str, wrappers: Sequence[Wrapper] = (),
           offload: Offload = _inline) -> grpc.RpcMethodHandler:  # fmt: skip
    """Parsing moves to `offload`'s thread for big messages: protobuf copies a 64 MB message in about 60 ms."""
    parse = handler.request_deserializer
    code, message = _invalid(method)

    async def request_of(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        """The parsed message (the call ends INVALID_ARGUMENT if it is corrupt), its wire size noted."""
        request = await offload(len(raw), _parse, parse, raw)
        if request is _CORRUPT:
            await context.abort(code, message)
        _received.set(len(raw))
        return request

    async def stream_of(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async for raw in requests:
            yield await request_of(raw, context)

    if not handler.request_streaming:
        behavior = handler.unary_unary or handler.unary_stream

        async def unary(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
            return await behavior(await request_of(raw, context), context)

        async def unary_streaming(raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async for response in behavior(await request_of(raw, context), context):
                yield response

        factory = (
            grpc.unary_stream_rpc_method_handler if handler.response_streaming else grpc.unary_unary_rpc_method_handler
        )
        wrapped: Any = unary_streaming if handler.response_streaming else unary
    else:
        behavior = handler.stream_unary or handler.stream_stream

        async def streaming_unary(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> Any:
            return await behavior(stream_of(requests, context), context)

        async def streaming(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async for response in behavior(stream_of(requests, context), context):
                yield response

        factory = (
            grpc.stream_stream_rpc_method_handler
            if handler.response_streaming
            else grpc.stream_unary_rpc_method_handler
        )
        wrapped = streaming if handler.response_streaming else streaming_unary
    for wrap in wrappers:
        wrapped = wrap(wrapped, method, handler.response_streaming)
    return factory(wrapped, request_deserializer=None, response_serializer=handler.response_serializer)


class _Collect:
    """Stands in for the server while generated `add_*_to_server` code registers its handlers."""

    def __init__(self) -> None:
        self.services: dict[str, dict[str, grpc.RpcMethodHandler]] = {}

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        pass

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self.services[service] = handlers


def add_guarded(
    add: Callable[[Any, Any], None],
    servicer: object,
    server: grpc.aio.Server,
    wrappers: Sequence[Wrapper] = (),
    offload: Offload = _inline,
) -> None:
    """`add(servicer, server)` as generated, with every method's parsing guarded and then wrapped by each of
    `wrappers` in turn (the last outermost). Done once at registration (not as an interceptor, which would
    cost every call an extra coroutine, wrappers or not)."""
    collected = _Collect()
    add(servicer, collected)
    for service, handlers in collected.services.items():
        guarded = {name: _guard(handler, f"/{service}/{name}", wrappers, offload) for name, handler in handlers.items()}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, guarded),))
        server.add_registered_method_handlers(service, guarded)
