"""The hot routes as plain ASGI, in front of FastAPI: V2 ``/infer`` and the task API's four tasks.

A profile of the server under load spent about 40% of the event loop in FastAPI's middleware, routing and
dependency machinery. These routes carry almost all traffic, so they are answered here directly, by the same
endpoint functions the FastAPI routes call (endpoints.py) after the same API-key check (auth.KeyCheck); this
module only matches the path and writes the reply or the error. Multipart uploads go on to FastAPI, whose
body-limit middleware bounds the form parser's reads; so does anything this module does not recognise (another
method or path). HEAD goes on as GET.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import ClientLeft, ServiceError
from ..security.keys import KeyRing
from .auth import KeyCheck
from .endpoints import Endpoints, Reply
from .errors import client_left_response, service_error_response
from .uploads import MULTIPART, media_type

log = logging.getLogger(__name__)

V2_INFER = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")
TASK = re.compile(r"^/v1/models/([^/:]+)(?:/versions/([^/:]+))?:(classify|denoise|reconstruct|encode)$")


class FastPath:
    def __init__(self, app: ASGIApp, endpoints: Endpoints, keys: KeyRing | None) -> None:
        self.app = app
        self.endpoints = endpoints
        self.keys = KeyCheck(keys) if keys is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "HEAD":
            # HEAD is GET without the body (load balancers probe with it): the app answers the GET, and uvicorn,
            # which still sees the request as HEAD, sends the headers alone.
            await self.app({**scope, "method": "GET"}, receive, send)
            return
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            if (match := V2_INFER.match(path)) is not None:
                await self._serve(scope, receive, send, self.endpoints.v2_infer, scope, receive, *match.groups())
                return
            if (match := TASK.match(path)) is not None and media_type(scope) != MULTIPART:
                name, version, task = match.groups()
                await self._serve(scope, receive, send, self.endpoints.task, task, scope, receive, name, version)
                return
        await self.app(scope, receive, send)

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, endpoint: Callable[..., Awaitable[Reply]], *args: object
    ) -> None:
        """The key, then the endpoint; any failure answered with the one error table and bodies (errors.py)."""
        try:
            if self.keys is not None:
                self.keys.check_scope(scope)
            status, headers, body = await endpoint(*args)
        except ClientLeft:  # the client went away before its body arrived
            await client_left_response(scope["path"])(scope, receive, send)
            return
        except ServiceError as error:
            await service_error_response(scope["path"], error)(scope, receive, send)
            return
        except Exception:
            log.exception("unhandled error on POST %s", scope["path"])
            await service_error_response(scope["path"], ServiceError("internal error"))(scope, receive, send)
            return
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
