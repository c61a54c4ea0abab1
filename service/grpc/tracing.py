"""A server span around every traced gRPC method: the W3C context from the call's metadata, given back in
its initial metadata, and the status code it ended with. Wrapped once at registration, only when tracing is
on (otherwise the handlers are registered as they are)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from ..observe.tracing import Tracing

Behavior = Callable[[Any, grpc.aio.ServicerContext], Any]


def _carrier(context: grpc.aio.ServicerContext) -> dict[str, str]:
    return {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}


def _attributes(method: str) -> dict[str, str]:
    service, _, name = method.lstrip("/").partition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}


def _status(span: Any, context: grpc.aio.ServicerContext) -> None:
    code = context.code()
    value = code.value[0] if isinstance(code, grpc.StatusCode) else (code or 0)
    span.set_attribute("rpc.grpc.status_code", int(value))


def traced(tracing: Tracing) -> Callable[[Behavior, str, bool], Behavior]:
    """A registration-time wrapper (see wire.add_guarded): each call inside its server span."""

    def wrap(behavior: Behavior, method: str, response_streaming: bool) -> Behavior:
        return _traced(behavior, method, tracing, response_streaming)

    return wrap


def _traced(behavior: Behavior, method: str, tracing: Tracing, response_streaming: bool) -> Behavior:
    attributes = _attributes(method)
    name = method.lstrip("/")

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        with tracing.request(name, _carrier(context), **attributes) as span:
            await context.send_initial_metadata(tuple(tracing.response_headers().items()))
            try:
                return await behavior(request, context)
            finally:
                _status(span, context)

    async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        with tracing.request(name, _carrier(context), **attributes) as span:
            await context.send_initial_metadata(tuple(tracing.response_headers().items()))
            try:
                async for response in behavior(request, context):
                    yield response
            finally:
                _status(span, context)

    return streaming if response_streaming else unary
