"""One error hierarchy for the whole service, mapped once to HTTP statuses and gRPC codes.

Adapters never invent statuses: they raise or catch a ServiceError and look it up in ERROR_TABLE.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc


class ServiceError(Exception):
    """Base of every error a client can be shown. The message says what was wrong."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class InvalidInput(ServiceError):
    """The request is malformed: bad image bytes, wrong shape or dtype, bad base64, empty batch."""


class PayloadTooLarge(InvalidInput):
    """Bytes, pixels or batch size over the configured limits."""


class Unauthenticated(ServiceError):
    """Missing or wrong API key."""


class NotPermitted(ServiceError):
    """The request is understood but this server does not allow it (repository control switched off)."""


class ModelNotFound(ServiceError):
    """No such model or version in the repository."""


class ModelNotReady(ServiceError):
    """The model exists but is loading, unloaded or failed."""


class UnsupportedTask(ServiceError):
    """The model cannot do the asked task (e.g. encode on a model without a latent output)."""


class Overloaded(ServiceError):
    """The batcher's queue is full; retry later."""


class DeadlineExceeded(ServiceError):
    """The request waited longer than its deadline."""


class ShuttingDown(ServiceError):
    """The server is draining and takes no new work."""


class InferenceFailed(ServiceError):
    """The runtime failed on a batch; every request in that batch gets this."""


class ClientLeft(Exception):
    """The client went away mid-request (a body that never finished arriving): no one to answer, and not a
    server failure. Counted as CANCELLED, as gRPC counts a client that cancels."""


@dataclass(frozen=True)
class ErrorMapping:
    http_status: int
    grpc_code: grpc.StatusCode


# The one table. Most specific classes first: lookup walks the MRO.
ERROR_TABLE: dict[type[ServiceError], ErrorMapping] = {
    PayloadTooLarge: ErrorMapping(413, grpc.StatusCode.INVALID_ARGUMENT),
    InvalidInput: ErrorMapping(400, grpc.StatusCode.INVALID_ARGUMENT),
    Unauthenticated: ErrorMapping(401, grpc.StatusCode.UNAUTHENTICATED),
    NotPermitted: ErrorMapping(403, grpc.StatusCode.PERMISSION_DENIED),
    ModelNotFound: ErrorMapping(404, grpc.StatusCode.NOT_FOUND),
    UnsupportedTask: ErrorMapping(400, grpc.StatusCode.INVALID_ARGUMENT),
    ModelNotReady: ErrorMapping(503, grpc.StatusCode.UNAVAILABLE),
    Overloaded: ErrorMapping(429, grpc.StatusCode.RESOURCE_EXHAUSTED),
    DeadlineExceeded: ErrorMapping(504, grpc.StatusCode.DEADLINE_EXCEEDED),
    ShuttingDown: ErrorMapping(503, grpc.StatusCode.UNAVAILABLE),
    InferenceFailed: ErrorMapping(500, grpc.StatusCode.INTERNAL),
    ServiceError: ErrorMapping(500, grpc.StatusCode.INTERNAL),
}


def mapping_for(error: ServiceError) -> ErrorMapping:
    for cls in type(error).__mro__:
        if cls in ERROR_TABLE:
            return ERROR_TABLE[cls]
    return ERROR_TABLE[ServiceError]
