"""Request-body limit enforced below every route, so no handler can read an unbounded body into memory."""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core.offload import Offloader
from ..errors import PayloadTooLarge
from .errors import service_error_response


def check_json_size(size: int, limit: int, what: str, advice: str = "") -> None:
    """The JSON limit (max_json_bytes), checked before parsing: parsing JSON holds the GIL throughout, so large
    payloads belong in the binary forms `advice` names."""
    if size > limit:
        tail = f": {advice}" if advice else ""
        raise PayloadTooLarge(f"{what} is {size} bytes; the limit is {limit} (max_json_bytes){tail}")


async def joined(chunks: list[bytes], size: int, offload: Offloader) -> bytes:
    """A body from the chunks it arrived in. A big one is joined on the pool: bytes.join releases the GIL
    for the copy, so the loop goes on serving, where joining 64 MiB on the loop holds it for ~100 ms."""
    if len(chunks) == 1:
        return chunks[0]
    return await offload.sized(size, b"".join, chunks)


async def read_body(request: Request, offload: Offloader) -> bytes:
    """Starlette's ``request.body()`` without its join on the loop (the limit still applies: the middleware
    below stops the read)."""
    chunks = [chunk async for chunk in request.stream() if chunk]
    return await joined(chunks, sum(len(chunk) for chunk in chunks), offload) if chunks else b""


class BodyLimitMiddleware:
    """Rejects a declared Content-Length over the limit before reading, and stops a streamed (chunked or
    lying) body as soon as it passes the limit: the raise surfaces inside the route's read, where the
    error handler turns it into a 413."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"request body is larger than the limit of {self.max_bytes} bytes")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                response = service_error_response(scope["path"], self._too_large())
                await response(scope, receive, send)
                return

        received = 0

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large()
            return message

        await self.app(scope, bounded_receive, send)
