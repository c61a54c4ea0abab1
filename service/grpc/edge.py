"""The gRPC edge: every call of the task and V2 services gets its request context, read once while the call
is live (metadata, peer), and is handed to the operations hooks when it opens and closes. Wrapped once at
registration (see wire.add_guarded), only when some hook works at the edge (the access log, tracing).

Nothing here touches the call after it ended: the status is read from what ended the handler, at that moment.
A streaming call that a client cancelled ends with its generator closed, and grpc.aio's context is then
gone (reading its peer crashed the process)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import grpc

from ..context import RequestContext, current
from ..hooks import Hooks
from ..observe.metrics import status_code_name
from .auth import text_metadata

Behavior = Callable[[Any, grpc.aio.ServicerContext], Any]
TASKS = {"Classify": "classify", "ClassifyStream": "classify", "Denoise": "denoise", "Reconstruct": "reconstruct",
         "Encode": "encode", "ModelInfer": "infer", "ModelStreamInfer": "infer"}  # fmt: skip


def _code_name(code: object) -> str:
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int):
        return next((c.name for c in grpc.StatusCode if c.value[0] == code), str(code))
    return "UNKNOWN"


def _ended(context: grpc.aio.ServicerContext, error: BaseException) -> str:
    """The status a handler's exception ends the call with; called in the handler, while the call is live."""
    if isinstance(error, grpc.aio.AbortError):
        return _code_name(context.code())
    if isinstance(error, GeneratorExit | asyncio.CancelledError):
        return "CANCELLED"
    return status_code_name(error)


def with_hooks(hooks: Hooks, identify: Callable[[Mapping[str, str]], str | None] | None = None
               ) -> Callable[[Behavior, str, bool], Behavior]:  # fmt: skip
    """A registration-time wrapper (see wire.add_guarded) calling `hooks` around each call. `identify`: which
    API key a call presents, by fingerprint (security/keys.py)."""

    def wrap(behavior: Behavior, method: str, response_streaming: bool) -> Behavior:
        rpc = method.lstrip("/")
        task = TASKS.get(rpc.rpartition("/")[2])

        async def open_call(context: grpc.aio.ServicerContext) -> RequestContext:
            metadata = text_metadata(context.invocation_metadata())
            ctx = RequestContext("grpc", rpc, metadata, client=context.peer(), task=task)
            if identify is not None:
                ctx.key = identify(metadata)
            current.set(ctx)  # each call runs in a task of its own: nothing to reset
            hooks.opened(ctx)
            if ctx.trailers:
                context.set_trailing_metadata(tuple(ctx.trailers))
            if ctx.headers:
                await context.send_initial_metadata(tuple(ctx.headers))
            return ctx

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            ctx = await open_call(context)
            try:
                response = await behavior(request, context)
            except BaseException as error:
                ctx.status = _ended(context, error)
                raise
            else:
                ctx.status = "OK"
                return response
            finally:
                hooks.closed(ctx)

        async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            ctx = await open_call(context)
            ctx.status = "OK"
            try:
                async for response in behavior(request, context):
                    yield response
            except BaseException as error:
                ctx.status = _ended(context, error)
                raise
            finally:
                hooks.closed(ctx)

        return streaming if response_streaming else unary

    return wrap
