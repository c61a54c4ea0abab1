"""The REST endpoints that carry traffic, each written once and called from both REST edges.

The task API's four tasks and V2 inference are answered by the plain-ASGI fast path (fastpath.py), which skips
FastAPI's per-request machinery, and by the FastAPI routes (tasks.py, v2.py), which keep the OpenAPI schema and
take the multipart uploads (read under the body-limit middleware). Both call the functions here, so the body
limit, the upload's parsing, the options, the model reference and the answer are each decided in one place:
here, in uploads.py and limits.py, and in the task API (protocol/tasks.py). The API key is checked by each edge
with the one `KeyCheck` (auth.py) before an endpoint runs.

An endpoint reads the raw ASGI scope and receive, and answers (status, headers, body).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import numpy as np
import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope

from ..core.types import Core, TaskName, TaskResult
from ..protocol import tasks
from ..protocol.tasks import Answer
from ..protocol.v2.infer import infer as v2_infer
from ..protocol.v2.metadata import model_ref as v2_model_ref
from ..settings import Settings
from .limits import read_body
from .uploads import Upload, header, read_upload
from .v2_codec import BINARY_OUTPUT, HEADER_LENGTH, decode_request, encode_response, inflate

Reply = tuple[int, list[tuple[bytes, bytes]], bytes]

JSON_TYPE = b"application/json"
PNG_TYPE = "image/png"
HEADER_LENGTH_KEY = HEADER_LENGTH.lower().encode()
ANOMALY_MAP_DECIMALS = 6  # JSON writes the per-pixel map to a micro-unit: float32 noise would triple its text


def query_fields(scope: Scope) -> dict[str, str]:
    """The query string's fields; of a repeated one the last value wins (as FastAPI reads one)."""
    query = scope.get("query_string", b"")
    return dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True)) if query else {}


def _json_value(value: object) -> object:
    """The task API's values JSON has no type for: PNGs as base64 text, float arrays as nested lists."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, np.ndarray):
        return np.round(value, ANOMALY_MAP_DECIMALS).tolist()
    raise TypeError(f"no JSON form for {type(value).__name__}")


def json_body(answer: Answer) -> bytes:
    return orjson.dumps(answer, default=_json_value)


def _json_answer(build: Callable[[Any], Answer], result: TaskResult) -> bytes:
    return json_body(build(result))


ANSWERS: dict[TaskName, Callable[[Any], Answer]] = {
    "classify": tasks.classification,
    "denoise": tasks.reconstruction,
    "reconstruct": tasks.reconstruction,
    "encode": tasks.encoding,
}


def wants_png(scope: Scope, upload: Upload) -> bool:
    """`:denoise` answers a bare PNG for one image when the client asks for image/png, or sent a raw image
    body without asking for JSON; otherwise JSON with base64 PNGs."""
    if len(upload.images) != 1:
        return False
    accept = (header(scope, b"accept") or "").lower()
    if PNG_TYPE in accept:
        return True
    return upload.raw and "application/json" not in accept


def _png_reply(answer: Answer) -> Reply:
    """One denoised image as image/png, the rest of its answer in headers."""
    item, model, prepared = answer["results"][0], answer["model"], answer["prepared"]
    headers = [
        (b"content-type", PNG_TYPE.encode()),
        (b"x-model-name", model["name"].encode()),
        (b"x-model-version", str(model["version"]).encode()),
        (b"x-reconstruction-error", repr(item["error"]).encode()),
    ]
    if prepared is not None:
        headers.append((b"x-prepared", f"resize={prepared['resize']}; normalize={prepared['normalize']}".encode()))
    return 200, headers, item["image"]


def response(reply: Reply) -> Response:
    """A reply as a starlette response, for the FastAPI routes; headers as the endpoint wrote them."""
    status, headers, body = reply
    answer = Response(content=body, status_code=status)
    answer.raw_headers = [*headers, (b"content-length", str(len(body)).encode())]
    return answer


class Endpoints:
    """The hot endpoints around one core; stateless past its settings, so both edges share one."""

    def __init__(self, core: Core, settings: Settings) -> None:
        self.core = core
        self.settings = settings
        self.offload = core.offload

    async def task(self, task: TaskName, scope: Scope, receive: Receive, name: str, version: str | None) -> Reply:
        """``POST /v1/models/{name}[/versions/{version}]:{task}``: the upload and its options (the query
        string's win over the body's), through the core, answered as the task API decides."""
        core = self.core
        with core.request(task, name, "rest"):
            query = tasks.options_from(query_fields(scope))
            upload = await read_upload(scope, receive, self.settings, self.offload)
            options = query.over(upload.options)
            ref = tasks.model_ref(name, version)
            inputs = options.inputs(encoded=upload.images)
            if task == "classify":
                result: TaskResult = await core.classify(ref, inputs, top_k=options.top_k)
            elif task == "denoise":
                result = await core.denoise(ref, inputs)
            elif task == "reconstruct":
                result = await core.reconstruct(ref, inputs)
            else:
                result = await core.encode(ref, inputs)
        work = tasks.answer_work(result)
        if task == "denoise" and wants_png(scope, upload):
            return _png_reply(await self.offload.sized(work, tasks.reconstruction, result))
        body = await self.offload.sized(work, _json_answer, ANSWERS[task], result)
        return 200, [(b"content-type", JSON_TYPE)], body

    async def v2_infer(self, scope: Scope, receive: Receive, name: str, version: str | None) -> Reply:
        """``POST /v2/models/{name}[/versions/{version}]/infer``: JSON or binary-tensor inference, decided by the
        V2 protocol (protocol/v2); the body is decoded and the answer encoded off the loop when big."""
        limit, offload = self.settings.max_request_bytes, self.offload
        with self.core.request("infer", name, "rest"):
            body = await read_body(scope, receive, limit, offload)
            encoding = header(scope, b"content-encoding")
            if encoding:  # inflating may produce up to the limit whatever the body size: off the loop
                body = await offload.always(inflate, body, encoding, limit)
            header_length, ref = header(scope, HEADER_LENGTH_KEY), v2_model_ref(name, version)
            json_limit = self.settings.max_json_bytes
            decoded = await offload.sized(len(body), decode_request, body, header_length, ref, json_limit)
            answer = await v2_infer(self.core, decoded)
            size = sum(t.array.nbytes for t in answer.outputs)
            binary = bool(decoded.parameters.get(BINARY_OUTPUT, False))
            content, headers = await offload.sized(size, encode_response, answer, binary)
        return 200, [(k.lower().encode(), v.encode()) for k, v in headers.items()], content
