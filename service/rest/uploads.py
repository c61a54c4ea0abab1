"""Task-API request bodies -> encoded image bytes, one entry per image, in the order sent, and the options the
body carries. Decided here for both REST edges.

Three shapes, chosen by Content-Type:
- an image type (image/png, image/jpeg, ...), application/octet-stream, curl's default
  application/x-www-form-urlencoded or none: the body is one image file;
- multipart/form-data: every file part is one image (any field name), plus the options as fields (``top_k``,
  ``resize``, ``normalize``, ``return_input``);
- application/json: ``{"images": ["<base64>", ...], "top_k": 3}`` with the same options as fields.
The options are checked by the task API's rules (protocol/tasks.py); decoding the images is the core's job.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import Receive, Scope

from ..core.offload import Offloader
from ..errors import InvalidInput
from ..protocol import tasks
from ..protocol.tasks import NO_OPTIONS, OPTION_NAMES, Options
from ..settings import Settings
from .limits import check_json_size, read_body
from .schemas import ImagesRequest

# curl --data-binary sends application/x-www-form-urlencoded unless told otherwise: treat it as a raw image.
RAW_TYPES = ("application/octet-stream", "application/x-www-form-urlencoded", "")
MULTIPART = "multipart/form-data"
JSON = "application/json"
DATA_URL_SEPARATOR = ";base64,"


@dataclass(frozen=True, slots=True)
class Upload:
    images: list[bytes]
    options: Options = field(default=NO_OPTIONS)  # from the body (JSON or form fields); the query string's win
    raw: bool = False  # one image sent as the whole body


def header(scope: Scope, name: bytes) -> str | None:
    """A request header (lower-case name), from the raw ASGI headers."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def media_type(scope: Scope) -> str:
    return (header(scope, b"content-type") or "").split(";", 1)[0].strip().lower()


def _b64decode(text: str, index: int) -> bytes:
    if text.startswith("data:") and DATA_URL_SEPARATOR in text:
        text = text.split(DATA_URL_SEPARATOR, 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"images[{index}] is not valid base64: {exc}") from exc


def parse_json_upload(body: bytes, limit: int) -> Upload:
    """Base64 images in JSON, bounded by the JSON limit before parsing: parsing holds the GIL throughout (64 MiB
    held it ~200 ms on 2 cores, every other request waiting), so big images go as multipart or raw bytes."""
    advice = "send large images as multipart/form-data or as the raw image body"
    check_json_size(len(body), limit, "the JSON body", advice)
    try:
        request = ImagesRequest.model_validate_json(body)
    except ValidationError as exc:
        details = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        raise InvalidInput(f"invalid JSON body: {details}") from exc
    images = [_b64decode(text, i) for i, text in enumerate(request.images)]
    return Upload(images, tasks.options(request.top_k, request.resize, request.normalize, request.return_input))


async def _read_multipart(scope: Scope, receive: Receive, settings: Settings) -> Upload:
    images: list[bytes] = []
    fields: dict[str, str] = {}
    try:
        async with Request(scope, receive).form(max_files=settings.max_batch_images, max_fields=8) as form:
            for name, value in form.multi_items():
                if isinstance(value, UploadFile):
                    images.append(await value.read())
                elif name in OPTION_NAMES:
                    fields[name] = value
                else:
                    raise InvalidInput(
                        f"unexpected form field {name!r}: send image files and optionally {', '.join(OPTION_NAMES)}"
                    )
    except HTTPException as exc:  # starlette's multipart parser reports malformed bodies this way
        raise InvalidInput(f"malformed multipart body: {exc.detail}") from exc
    return Upload(images, tasks.options_from(fields))


async def read_upload(scope: Scope, receive: Receive, settings: Settings, offload: Offloader) -> Upload:
    """The request's images and body options, by its Content-Type."""
    kind = media_type(scope)
    if kind == MULTIPART:
        return await _read_multipart(scope, receive, settings)
    if kind == JSON or kind.endswith("+json"):
        body = await read_body(scope, receive, settings.max_request_bytes, offload)
        return await offload.sized(len(body), parse_json_upload, body, settings.max_json_bytes)
    if kind.startswith("image/") or kind in RAW_TYPES:
        body = await read_body(scope, receive, settings.max_request_bytes, offload)
        if not body:
            raise InvalidInput("the request body is empty: send an image file")
        return Upload([body], raw=True)
    raise InvalidInput(
        f"unsupported Content-Type {kind!r}: send an image (image/png, image/jpeg, ...), "
        "multipart/form-data files or application/json with base64 images"
    )
