"""The HTTP edge: one pure ASGI wrapper that sets the request's context once and hands it to the operations
hooks (service/hooks.py) when it opens and closes. It is installed only when some hook works at the edge (the
access log, tracing); the server's own warm-up requests pass untouched."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..context import RequestContext, current
from ..hooks import Hooks
from .app import is_internal
from .errors import CLIENT_LEFT

PROBES = re.compile(r"^/(metrics$|v2/health/|v2/models/[^/]+(/versions/[^/]+)?/ready$)")
TASK_ROUTE = re.compile(r"^/v1/models/([^/:]+)(?:/versions/[^/:]+)?:(\w+)$")
V2_ROUTE = re.compile(r"^/v2/models/([^/]+)(?:/versions/[^/]+)?(/infer)?$")


def _model_and_task(path: str) -> tuple[str | None, str | None]:
    if match := TASK_ROUTE.match(path):
        return match.group(1), match.group(2)
    if match := V2_ROUTE.match(path):
        return match.group(1), "infer" if match.group(2) else None
    return None, None


def context_of(scope: Scope) -> RequestContext:
    """Everything the hooks may want from the request, read once from its scope."""
    metadata: dict[str, str] = {}
    for name, value in scope["headers"]:
        metadata.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    declared = metadata.get("content-length", "")
    path = scope["path"]
    model, task = _model_and_task(path)
    client = scope.get("client")
    return RequestContext(
        "rest", f"{scope['method']} {path}", metadata, client=f"{client[0]}:{client[1]}" if client else None,
        method=scope["method"], path=path, task=task, model=model, probe=PROBES.match(path) is not None,
        wire_bytes=int(declared) if declared.isdigit() else None,
    )  # fmt: skip


class RequestEdge:
    """`identify`: which API key a request presents, by fingerprint (security/keys.py), for the hooks."""

    def __init__(self, app: ASGIApp, hooks: Hooks, identify: Callable[[Mapping[str, str]], str | None] | None = None):
        self.app = app
        self.hooks = hooks
        self.identify = identify

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_internal(scope):
            await self.app(scope, receive, send)
            return
        ctx = context_of(scope)
        if self.identify is not None:
            ctx.key = self.identify(ctx.metadata)
        token = current.set(ctx)
        self.hooks.opened(ctx)
        given_back = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in (*ctx.headers, *ctx.trailers)]

        async def edge_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                ctx.status = message["status"]
                if given_back:
                    message = {**message, "headers": [*message.get("headers", ()), *given_back]}
            elif message["type"] == "http.response.body":
                ctx.bytes_out += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, edge_send)
            if not ctx.status:  # the app ended without answering: only when the client left mid-request
                ctx.status = CLIENT_LEFT
        finally:
            current.reset(token)
            self.hooks.closed(ctx)
