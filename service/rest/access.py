"""The HTTP side of the access log (service/access_log.py): a pure ASGI wrapper that times the request,
takes or makes its ``x-request-id`` (given back in the response and current for everything inside it) and
queues one entry when the response is sent. Probes and scrapes are left out unless ``access_log_probes``."""

from __future__ import annotations

import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..observe import access_log
from ..observe.access_log import REQUEST_ID_HEADER, AccessLog, RequestNote
from .app import is_internal

PROBES = re.compile(r"^/(metrics$|v2/health/|v2/models/[^/]+(/versions/[^/]+)?/ready$)")
TASK_ROUTE = re.compile(r"^/v1/models/([^/:]+)(?:/versions/[^/:]+)?:(\w+)$")
V2_ROUTE = re.compile(r"^/v2/models/([^/]+)(?:/versions/[^/]+)?(/infer)?$")
_REQUEST_ID = REQUEST_ID_HEADER.encode()


def _model_and_task(path: str) -> tuple[str | None, str | None]:
    if match := TASK_ROUTE.match(path):
        return match.group(1), match.group(2)
    if match := V2_ROUTE.match(path):
        return match.group(1), "infer" if match.group(2) else None
    return None, None


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp, log: AccessLog, *, probes: bool, trace_id: Any = None) -> None:
        """`trace_id`: a function giving the current trace id (with tracing on), else None."""
        self.app = app
        self.log = log
        self.probes = probes
        self.trace_id = trace_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (not self.probes and PROBES.match(scope["path"])) or is_internal(scope):
            await self.app(scope, receive, send)
            return
        started, clock = time.time(), time.perf_counter()
        given = bytes_in = user_agent = None
        for name, value in scope["headers"]:
            if name == _REQUEST_ID:
                given = value.decode("latin-1")
            elif name == b"content-length":
                bytes_in = int(value) if value.isdigit() else None
            elif name == b"user-agent":
                user_agent = value.decode("latin-1")[:256]
        note = RequestNote(self.log.new_request_id(given))
        rid = note.request_id
        token = access_log.current.set(note)
        status, sent = 0, 0

        async def logged_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), (_REQUEST_ID, rid.encode())]}
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, logged_send)
        finally:
            access_log.current.reset(token)
            model, task = _model_and_task(scope["path"])
            client = scope.get("client")
            self.log.record({
                "started": started,
                "protocol": "http",
                "method": scope["method"],
                "path": scope["path"],
                "status": status or 500,  # the app ended without answering
                "duration_ms": round((time.perf_counter() - clock) * 1000, 3),
                "model": note.model or model,
                "version": note.version,
                "task": task,
                "request_id": rid,
                "trace_id": self.trace_id() if self.trace_id is not None else None,
                "client": f"{client[0]}:{client[1]}" if client else None,
                "bytes_in": bytes_in,
                "bytes_out": sent,
                "user_agent": user_agent,
            })  # fmt: skip
