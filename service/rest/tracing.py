"""A server span around every traced HTTP request, outermost (so it covers the fast path and FastAPI alike):
the W3C context from the request's headers, given back in the response's, named ``METHOD route`` with the
model and version in the route replaced by placeholders. Probes and scrapes (health, /metrics) are not
traced, nor the playground. Installed only when tracing is on."""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..observe.tracing import Tracing
from .app import is_internal

UNTRACED = re.compile(r"^/($|metrics$|ui(/|$)|v2/health/|v2/models/[^/]+(/versions/[^/]+)?/ready$)")
MODEL = re.compile(r"/models/[^/:]+")
VERSION = re.compile(r"/versions/[^/:]+")
PROPAGATED = (b"traceparent", b"tracestate")


def route(path: str) -> str:
    """`/v2/models/mnist/versions/3/infer` → `/v2/models/{model}/versions/{version}/infer`."""
    return VERSION.sub("/versions/{version}", MODEL.sub("/models/{model}", path))


def protocol(path: str) -> str:
    return "v2" if path.startswith("/v2/") else "task" if path.startswith("/v1/") else "http"


class TracingMiddleware:
    def __init__(self, app: ASGIApp, tracing: Tracing) -> None:
        self.app = app
        self.tracing = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or UNTRACED.match(scope["path"]) or is_internal(scope):
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k in PROPAGATED}
        attributes = {
            "http.request.method": method,
            "url.path": path,
            "http.route": route(path),
            "pixelserve.protocol": protocol(path),
        }
        with self.tracing.request(f"{method} {route(path)}", carrier, **attributes) as span:
            given_back = [(k.encode(), v.encode()) for k, v in self.tracing.response_headers().items()]

            async def traced_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        from opentelemetry.trace import Status, StatusCode

                        span.set_status(Status(StatusCode.ERROR))
                    message = {**message, "headers": [*message.get("headers", []), *given_back]}
                await send(message)

            await self.app(scope, receive, traced_send)
