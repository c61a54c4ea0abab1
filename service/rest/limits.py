"""The request-body limit, decided here for every REST route: the endpoints' own body reader (both edges) and
the middleware below FastAPI (multipart forms, the cold routes) refuse a declared or streamed body over
max_request_bytes alike, so no handler can read an unbounded body into memory."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core.offload import Offloader
from ..errors import ClientLeft, PayloadTooLarge
from ..protocol.v2.tensors import is_count
from .errors import service_error_response


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")


def declared_over(scope: Scope, limit: int) -> bool:
    """Whether the request's Content-Length is over the limit: refused before a byte is read."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            text = value.decode("latin-1")
            return is_count(text) and int(text) > limit
    return False


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


async def read_body(scope: Scope, receive: Receive, limit: int, offload: Offloader) -> bytes:
    """The whole body, refused past `limit` as soon as it gets there, joined off the loop when big; a client
    that leaves before its body is complete raises ClientLeft (no one to answer)."""
    if declared_over(scope, limit):
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientLeft
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            return await joined(chunks, size, offload) if chunks else b""


class BodyLimitMiddleware:
    """Rejects a declared Content-Length over the limit before reading, and stops a streamed (chunked or
    lying) body as soon as it passes the limit: the raise surfaces inside the route's read, where the
    error handler turns it into a 413."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if declared_over(scope, self.max_bytes):
            await service_error_response(scope["path"], too_large(self.max_bytes))(scope, receive, send)
            return

        received = 0

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise too_large(self.max_bytes)
            return message

        await self.app(scope, bounded_receive, send)
