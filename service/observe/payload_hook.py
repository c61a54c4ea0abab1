"""Payload logging as a hook: which answers and refusals are offered to the payload log, under which protocol
name, with the request's id and trace id. Only requests that came through an adapter (their protocol is set)
are logged; the core's in-process callers (batch scoring, verify) never are."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ..errors import ServiceError
from ..hooks import RequestHook
from .payloads import PayloadLog, PayloadRecord

if TYPE_CHECKING:
    from ..core.calls import Call


def _protocol(call: Call) -> str:
    """Raw inference is the V2 protocol over either transport: "rest-v2", "grpc-v2"."""
    return f"{call.protocol}-v2" if call.task == "infer" else call.protocol


def _ids(call: Call) -> dict[str, str]:
    ctx = call.context
    return {"request_id": ctx.request_id, "trace_id": ctx.trace_id} if ctx is not None else {}


class PayloadHook(RequestHook):
    def __init__(self, log: PayloadLog) -> None:
        self.log = log

    def answered(self, call: Call, result: Any) -> None:
        """A sampled answer, offered to the log."""
        if not call.protocol or result is None or call.inputs is None:
            return
        if self.log.sample(result.model.name, call.task):
            record = PayloadRecord.answered(_protocol(call), call.task, call.inputs, result, **_ids(call))  # type: ignore[arg-type]
            self.log.offer(record)

    def failed(self, call: Call, error: BaseException) -> None:
        """A refused request whose inputs reached a served version, offered to the log when sampled."""
        if not call.protocol or call.served is None or call.inputs is None or call.ref is None:
            return
        if isinstance(error, ServiceError) and self.log.sample(call.ref.name, call.task):
            record = PayloadRecord.failed(_protocol(call), call.task, call.inputs, call.ref, str(error), **_ids(call))  # type: ignore[arg-type]
            self.log.offer(record)

    async def stop(self) -> None:
        await asyncio.to_thread(self.log.close)  # commits every open shard
