"""The core's side of payload logging: which answers and refusals are offered to the payload log, under which
protocol name, with the access log's request id and the trace id. Only requests that came through an adapter
(their protocol is set) are logged; the core's in-process callers (batch scoring, verify) never are."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from . import access_log

if TYPE_CHECKING:
    from ..core.types import ImageInputs, ModelRef
    from ..errors import ServiceError
    from .payloads import LoggedTask, PayloadLog
    from .tracing import Tracing

R = TypeVar("R")


def _protocol(protocol: str, task: str) -> str:
    """Raw inference is the V2 protocol over either transport: "rest-v2", "grpc-v2"."""
    return f"{protocol}-v2" if task == "infer" else protocol


def _ids(tracing: Tracing | None) -> dict[str, str]:
    return {"request_id": access_log.current_request_id(),
            "trace_id": tracing.trace_id() if tracing is not None else ""}  # fmt: skip


def answered(log: PayloadLog | None, tracing: Tracing | None, task: LoggedTask, inputs: ImageInputs, result: R) -> R:
    """`result`, offered to the log first when sampled."""
    model = result.model.name  # type: ignore[attr-defined]
    if log is None or not (protocol := access_log.protocol.get()) or not log.sample(model, task):
        return result
    from .payloads import PayloadRecord

    log.offer(PayloadRecord.answered(_protocol(protocol, task), task, inputs, result, **_ids(tracing)))
    return result


def failed(log: PayloadLog | None, tracing: Tracing | None, task: LoggedTask, ref: ModelRef, inputs: ImageInputs,
           error: ServiceError) -> None:  # fmt: skip
    """A refused request, offered to the log when sampled."""
    if log is None or not (protocol := access_log.protocol.get()) or not log.sample(ref.name, task):
        return
    from .payloads import PayloadRecord

    log.offer(PayloadRecord.failed(_protocol(protocol, task), task, inputs, ref, str(error), **_ids(tracing)))
