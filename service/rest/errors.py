"""The REST adapter's one exception handler: every failure becomes a status from `pixelserve.service.errors`.

Two body shapes, chosen by path, because the two APIs have different clients:
KServe V2 routes (``/v2/...``) answer ``{"error": "message"}`` as the Open Inference Protocol specifies, so
tritonclient shows the message; the task API answers ``{"error": {"code": "INVALID_ARGUMENT", "message": ...}}``
with the gRPC-style code name, the same name the gRPC adapter and the metrics use.
"""

from __future__ import annotations

import logging
import math
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response

from ..errors import ClientLeft, InvalidInput, Overloaded, ServiceError, mapping_for

log = logging.getLogger(__name__)

V2_PREFIX = "/v2"
CLIENT_LEFT = 499  # nginx's "client closed request": neither an answer nor a server fault
DEFAULT_RETRY_AFTER_S = 1


def error_response(path: str, status: int, code: str, message: str, retry_after: float | None = None) -> Response:
    """One error body in the shape the path's API promises."""
    body: dict[str, object]
    if path == V2_PREFIX or path.startswith(V2_PREFIX + "/"):
        body = {"error": message}
    else:
        body = {"error": {"code": code, "message": message}}
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return JSONResponse(body, status_code=status, headers=headers)


def service_error_response(path: str, error: ServiceError) -> Response:
    mapping = mapping_for(error)
    retry_after = error.retry_after
    if retry_after is None and isinstance(error, Overloaded):
        retry_after = DEFAULT_RETRY_AFTER_S
    return error_response(path, mapping.http_status, mapping.grpc_code.name, error.message, retry_after)


def client_left_response(path: str) -> Response:
    """The answer to a client that left before its request was complete, the same from the fast path and from
    FastAPI: no one reads it, but the edge's hooks see nginx's "client closed request" (499, as the edge logs a
    request that ended with no answer at all), neither a success nor a server fault."""
    return error_response(path, CLIENT_LEFT, "CANCELLED", "the client disconnected before its request was complete")


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
    return "invalid request: " + "; ".join(parts)


async def handle_error(request: Request, exc: Exception) -> Response:
    """Registered for every exception type, so no failure escapes in another shape (or as a 422 stack)."""
    path = request.url.path
    if isinstance(exc, ServiceError):
        return service_error_response(path, exc)
    if isinstance(exc, RequestValidationError):
        return service_error_response(path, InvalidInput(_validation_message(exc)))
    if isinstance(exc, HTTPException):  # routing: unknown path, wrong method
        status = HTTPStatus(exc.status_code)
        return error_response(path, status, status.name, str(exc.detail))
    if isinstance(exc, ClientDisconnect | ClientLeft):  # the client left, or a body deadline closed it
        log.debug("client disconnected during %s %s", request.method, path)
        return client_left_response(path)
    log.exception("unhandled error on %s %s", request.method, path)
    return service_error_response(path, ServiceError("internal error"))


def install_error_handler(app: FastAPI) -> None:
    # ClientDisconnect and ClientLeft by name: a handler only for Exception answers and then re-raises (starlette's
    # ServerErrorMiddleware), and uvicorn logs the disconnect as "Exception in ASGI application".
    for exc_type in (ServiceError, RequestValidationError, HTTPException, ClientDisconnect, ClientLeft, Exception):
        app.add_exception_handler(exc_type, handle_error)
