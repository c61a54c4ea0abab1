"""The gRPC side of the access log (service/access_log.py): every call of the task and V2 services queues
one entry when it ends, with its status code; its ``x-request-id`` (from the metadata, or new) is current
inside the call and given back in the trailing metadata. Wrapped once at registration, only when the access
log is on."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from ..observe import access_log
from ..observe.access_log import REQUEST_ID_HEADER, AccessLog, RequestNote

Behavior = Callable[[Any, grpc.aio.ServicerContext], Any]
TASKS = {"Classify": "classify", "ClassifyStream": "classify", "Denoise": "denoise", "Reconstruct": "reconstruct",
         "Encode": "encode", "ModelInfer": "infer", "ModelStreamInfer": "infer"}  # fmt: skip


def _code_name(context: grpc.aio.ServicerContext, error: BaseException | None) -> str:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int):
        return next((c.name for c in grpc.StatusCode if c.value[0] == code), str(code))
    return "OK" if error is None or isinstance(error, GeneratorExit) else "UNKNOWN"


def access_logged(log: AccessLog, trace_id: Any = None) -> Callable[[Behavior, str, bool], Behavior]:
    """A registration-time wrapper (see wire.add_guarded) for `log`."""

    def wrap(behavior: Behavior, method: str, response_streaming: bool) -> Behavior:
        rpc = method.lstrip("/")
        task = TASKS.get(rpc.rpartition("/")[2])

        def start(context: grpc.aio.ServicerContext) -> tuple[RequestNote, Any, dict[str, Any]]:
            """Everything the entry needs from the call is read here, while it is live: once a streaming call
            has ended (a client cancelled), context.peer() reads a freed call and crashes the process."""
            metadata = dict(context.invocation_metadata() or ())
            given = metadata.get(REQUEST_ID_HEADER)
            note = RequestNote(log.new_request_id(given if isinstance(given, str) else None))
            context.set_trailing_metadata(((REQUEST_ID_HEADER, note.request_id),))
            peer = {"client": context.peer(), "user_agent": metadata.get("user-agent")}
            return note, access_log.current.set(note), peer

        def finish(context: grpc.aio.ServicerContext, note: RequestNote, peer: dict[str, Any], started: float,
                   clock: float, error: BaseException | None) -> None:  # fmt: skip
            log.record({
                "started": started,
                "protocol": "grpc",
                "rpc": rpc,
                "code": _code_name(context, error),
                "duration_ms": round((time.perf_counter() - clock) * 1000, 3),
                "model": note.model,
                "version": note.version,
                "task": task,
                "request_id": note.request_id,
                "trace_id": trace_id() if trace_id is not None else None,
                **peer,
            })  # fmt: skip

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started, clock = time.time(), time.perf_counter()
            note, token, peer = start(context)
            error: BaseException | None = None
            try:
                return await behavior(request, context)
            except BaseException as exc:
                error = exc
                raise
            finally:
                access_log.current.reset(token)
                finish(context, note, peer, started, clock, error)

        async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started, clock = time.time(), time.perf_counter()
            note, _, peer = start(context)
            error: BaseException | None = None
            try:
                async for response in behavior(request, context):
                    yield response
            except BaseException as exc:
                error = exc
                raise
            finally:
                finish(context, note, peer, started, clock, error)

        return streaming if response_streaming else unary

    return wrap
