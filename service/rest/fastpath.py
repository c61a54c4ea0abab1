"""The hot routes as plain ASGI: V2 ``/infer`` and the task API's ``:classify``, in front of FastAPI.

A profile of the server under load spent about 40% of the event loop in FastAPI's middleware, routing and
dependency machinery. These two routes carry almost all traffic, so they are answered here directly: the
same core calls, the same error table and bodies, the same API key, body limit and metrics as the FastAPI
routes, which stay registered for the OpenAPI schema and every other request. Anything this module does not
recognise (another method or path, a multipart upload) goes on to FastAPI untouched; HEAD goes on as GET.
"""

from __future__ import annotations

import hmac
import logging
import re
from typing import Any
from urllib.parse import parse_qs

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from ..core.types import Core
from ..errors import ClientLeft, InvalidInput, PayloadTooLarge, ServiceError, Unauthenticated
from ..observe.metrics import Metrics
from ..protocol.v2.infer import infer as v2_infer
from ..protocol.v2.metadata import model_ref
from ..protocol.v2.tensors import is_count
from ..settings import Settings
from .auth import API_KEY_HEADER
from .errors import service_error_response
from .limits import joined
from .tasks import prepared_json
from .uploads import (
    JSON,
    MULTIPART,
    RAW_TYPES,
    Options,
    Upload,
    parse_flag,
    parse_json_upload,
    task_inputs,
)
from .v2_codec import BINARY_OUTPUT, HEADER_LENGTH, decode_request, encode_response, inflate

log = logging.getLogger(__name__)

V2_INFER = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")
CLASSIFY = re.compile(r"^/v1/models/([^/:]+)(?:/versions/([^/:]+))?:classify$")
JSON_HEADERS = [(b"content-type", b"application/json")]
HEADER_LENGTH_KEY = HEADER_LENGTH.lower().encode()


def _echo_size(result: Any) -> int:
    """Work of writing the answer: only echoed inputs (PNG-encoded) make it more than a moment's."""
    return 0 if result.inputs is None else int(result.inputs.nbytes) * 8


class _Disconnected(ClientLeft):
    """The client went away before its body arrived."""


def _classification_body(result: Any) -> bytes:
    """The task API's classify response, field for field as its pydantic schema (ClassifyResponse) writes it."""
    return orjson.dumps(
        {
            "model": {"name": result.model.name, "version": result.model.version},
            "results": [
                {
                    "top": [{"index": s.index, "label": s.label, "probability": s.probability} for s in item.top],
                    "ood_score": item.ood_score,
                    "ood_threshold": item.ood_threshold,
                    "is_ood": item.is_ood,
                    "anomaly_score": item.anomaly_score,
                }
                for item in result.items
            ],
            "prepared": prepared_json(result),
        }
    )


class FastPath:
    def __init__(self, app: ASGIApp, core: Core, settings: Settings, metrics: Metrics) -> None:
        self.app = app
        self.core = core
        self.settings = settings
        self.metrics = metrics
        self.offload = core.offload
        self.limit = settings.max_request_bytes
        self.json_limit = settings.max_json_bytes
        self._key = settings.api_key.get_secret_value().encode() if settings.api_key is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "HEAD":
            # HEAD is GET without the body (load balancers probe with it): the app answers the GET, and uvicorn,
            # which still sees the request as HEAD, sends the headers alone.
            await self.app({**scope, "method": "GET"}, receive, send)
            return
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            if (match := V2_INFER.match(path)) is not None:
                await self._serve(scope, receive, send, self._v2_infer, match)
                return
            if (match := CLASSIFY.match(path)) is not None and self._media_type(scope) != MULTIPART:
                await self._serve(scope, receive, send, self._classify, match)
                return
        await self.app(scope, receive, send)

    # -- plumbing ----------------------------------------------------------------------------------------

    @staticmethod
    def _header(scope: Scope, name: bytes) -> str | None:
        for key, value in scope["headers"]:
            if key == name:
                return value.decode("latin-1")
        return None

    def _media_type(self, scope: Scope) -> str:
        return (self._header(scope, b"content-type") or "").split(";", 1)[0].strip().lower()

    def _check_key(self, scope: Scope) -> None:
        """The same rule as the FastAPI guard: X-API-Key or Authorization: Bearer, compared in constant time."""
        if self._key is None:
            return
        supplied = self._header(scope, API_KEY_HEADER.lower().encode())
        if supplied is None:
            authorization = self._header(scope, b"authorization") or ""
            scheme, _, credentials = authorization.partition(" ")
            supplied = credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else None
        if supplied is None:
            raise Unauthenticated(f"missing API key: send {API_KEY_HEADER}: <key> or Authorization: Bearer <key>")
        if not hmac.compare_digest(supplied.encode(), self._key):
            raise Unauthenticated("wrong API key")

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        declared = self._header(scope, b"content-length")
        if declared is not None and is_count(declared) and int(declared) > self.limit:
            raise PayloadTooLarge(f"request body is larger than the limit of {self.limit} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                raise PayloadTooLarge(f"request body is larger than the limit of {self.limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return await joined(chunks, size, self.offload)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, handler: Any, match: re.Match[str]) -> None:
        try:
            self._check_key(scope)
            status, headers, body = await handler(scope, receive, match.group(1), match.group(2))
        except _Disconnected:
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

    # -- the routes --------------------------------------------------------------------------------------

    async def _v2_infer(self, scope: Scope, receive: Receive, name: str, version: str | None) -> tuple:
        with self.core.request("infer", name, "rest"):
            body = await self._body(scope, receive)
            encoding = self._header(scope, b"content-encoding")
            if encoding:  # inflating may produce up to the limit whatever the body size: off the loop
                body = await self.offload.always(inflate, body, encoding, self.limit)
            header_length, ref = self._header(scope, HEADER_LENGTH_KEY), model_ref(name, version)
            decoded = await self.offload.sized(len(body), decode_request, body, header_length, ref, self.json_limit)
            response = await v2_infer(self.core, decoded)
            size = sum(t.array.nbytes for t in response.outputs)
            binary = bool(decoded.parameters.get(BINARY_OUTPUT, False))
            content, headers = await self.offload.sized(size, encode_response, response, binary)
        return 200, [(k.lower().encode(), v.encode()) for k, v in headers.items()], content

    async def _classify(self, scope: Scope, receive: Receive, name: str, version: str | None) -> tuple:
        with self.core.request("classify", name, "rest"):
            options = self._options(scope)
            kind = self._media_type(scope)
            body = await self._body(scope, receive)
            if kind == JSON or kind.endswith("+json"):
                upload = await self.offload.sized(len(body), parse_json_upload, body, self.json_limit)
            elif kind.startswith("image/") or kind in RAW_TYPES:
                if not body:
                    raise InvalidInput("the request body is empty: send an image file")
                upload = Upload([body], raw=True)
            else:
                raise InvalidInput(
                    f"unsupported Content-Type {kind!r}: send an image (image/png, image/jpeg, ...), "
                    "multipart/form-data files or application/json with base64 images"
                )
            inputs = task_inputs(upload, options)
            top_k = options.top_k or upload.top_k
            result = await self.core.classify(model_ref(name, version), inputs, top_k=top_k)
        return 200, list(JSON_HEADERS), await self.offload.sized(_echo_size(result), _classification_body, result)

    @staticmethod
    def _options(scope: Scope) -> Options:
        """The query string's options, read with the FastAPI routes' rules (last value wins)."""
        query = scope.get("query_string", b"")
        if not query:
            return Options()
        values = {k: v[-1] for k, v in parse_qs(query.decode("latin-1"), keep_blank_values=True).items()}
        top_k = values.get("top_k")
        if top_k is not None and (not is_count(top_k) or int(top_k) < 1):
            raise InvalidInput(f"top_k: must be a positive integer, got {top_k!r}")
        echo = values.get("return_input")
        return Options(
            int(top_k) if top_k is not None else None,
            values.get("resize"),
            values.get("normalize"),
            parse_flag("return_input", echo) if echo is not None else None,
        )
