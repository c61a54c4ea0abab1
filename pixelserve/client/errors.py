"""One small exception hierarchy for both transports, so callers catch the same class whichever they use.

The server maps its failures once to an HTTP status and a gRPC code (pixelserve.service.errors); this is the
same table read backwards. Every error keeps the gRPC-style `code` name both transports share, the HTTP
`status` when it came over REST, and the wait the server asked for (`retry_after`) when it is overloaded.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterable, Mapping
from typing import Any


class PixelServeError(Exception):
    """Base of every error the client raises for a request that did not get an answer."""

    retryable = False  # whether sending the same request again later can succeed

    def __init__(
        self, message: str, *, code: str = "UNKNOWN", status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.message = message
        self.code = code
        self.status = status
        self.retry_after = retry_after


class InvalidInput(PixelServeError):
    """The request is wrong: an undecodable image, a wrong shape, an unknown option, a task the model lacks."""


class PayloadTooLarge(InvalidInput):
    """Bytes, pixels or images over a limit of the server (or over gRPC's message size): send less at once."""


class Unauthenticated(PixelServeError):
    """A missing or wrong API key."""


class PermissionDenied(PixelServeError):
    """Understood but not allowed by this server (e.g. repository control switched off)."""


class ModelNotFound(PixelServeError):
    """No such model or version (or no such route)."""


class Unavailable(PixelServeError):
    """Not now: the model is loading, the server is draining or restarting, or it cannot be reached."""

    retryable = True


class Overloaded(PixelServeError):
    """The server's queue is full; `retry_after` says how long it expects to need."""

    retryable = True


class DeadlineExceeded(PixelServeError):
    """The request took longer than its timeout, on the server or waiting for it."""


class ServerError(PixelServeError):
    """The server failed (an internal error, a failed batch): its log has the details."""


HTTP_ERRORS: dict[int, type[PixelServeError]] = {
    400: InvalidInput,
    401: Unauthenticated,
    403: PermissionDenied,
    404: ModelNotFound,
    413: PayloadTooLarge,
    429: Overloaded,
    503: Unavailable,
    504: DeadlineExceeded,
}
GRPC_ERRORS: dict[str, type[PixelServeError]] = {
    "INVALID_ARGUMENT": InvalidInput,
    "OUT_OF_RANGE": InvalidInput,
    "FAILED_PRECONDITION": InvalidInput,
    "UNAUTHENTICATED": Unauthenticated,
    "PERMISSION_DENIED": PermissionDenied,
    "NOT_FOUND": ModelNotFound,
    "UNAVAILABLE": Unavailable,
    "RESOURCE_EXHAUSTED": Overloaded,
    "DEADLINE_EXCEEDED": DeadlineExceeded,
}
PUSHBACK_TRAILER = "grpc-retry-pushback-ms"  # gRPC's own (its retry policy reads it)
RETRY_AFTER_TRAILER = "retry-after"  # pixelserve's, in seconds, as older servers send only this


def retry_after_header(value: str | None) -> float | None:
    """HTTP Retry-After: delay-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def retry_after_trailers(trailers: Iterable[tuple[str, Any]] | None) -> float | None:
    """The server's wait from gRPC trailing metadata: grpc-retry-pushback-ms, else retry-after (seconds)."""
    found = dict(trailers or ())
    for key, scale in ((PUSHBACK_TRAILER, 0.001), (RETRY_AFTER_TRAILER, 1.0)):
        value = found.get(key)
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        try:
            seconds = float(value) * scale if value is not None else None
        except ValueError:
            continue
        if seconds is not None and seconds >= 0:  # a negative pushback means "do not retry" to grpc: no hint here
            return seconds
    return None


def from_http(status: int, body: Any, headers: Mapping[str, str]) -> PixelServeError:
    """An error from a REST answer: the task API's ``{"error": {"code", "message"}}``, V2's ``{"error": msg}``
    or no JSON at all."""
    error = body.get("error") if isinstance(body, dict) else None
    code, message = None, None
    if isinstance(error, dict):
        code, message = error.get("code"), error.get("message")
    elif isinstance(error, str):
        message = error
    cls = HTTP_ERRORS.get(status) or (ServerError if status >= 500 else InvalidInput)
    return cls(
        str(message or f"HTTP {status}"),
        code=str(code or cls_code(cls)),
        status=status,
        retry_after=retry_after_header(headers.get("retry-after")),
    )


def from_grpc(code: str, details: str | None, trailers: Iterable[tuple[str, Any]] | None) -> PixelServeError:
    """An error from a gRPC status. RESOURCE_EXHAUSTED without a wait is grpc's own refusal of a message over a
    size limit, which sending again cannot cure; the server's queue-full answer always says how long to wait."""
    retry_after = retry_after_trailers(trailers)
    cls = GRPC_ERRORS.get(code, ServerError)
    if cls is Overloaded and retry_after is None:
        cls = PayloadTooLarge
    return cls(details or code, code=code, retry_after=retry_after)


def cls_code(cls: type[PixelServeError]) -> str:
    """The gRPC-style code name an error class stands for (for REST answers without a code in the body)."""
    for code, known in GRPC_ERRORS.items():
        if known is cls:
            return code
    if issubclass(cls, InvalidInput):
        return "INVALID_ARGUMENT"
    return "INTERNAL" if cls is ServerError else "UNKNOWN"
