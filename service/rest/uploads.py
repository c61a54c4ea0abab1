"""Task-API request bodies -> encoded image bytes, one entry per image, in the order sent.

Three shapes, chosen by Content-Type:
- an image type (image/png, image/jpeg, ...), application/octet-stream, curl's default
  application/x-www-form-urlencoded or none: the body is one image file;
- multipart/form-data: every file part is one image (any field name), plus an optional ``top_k`` field;
- application/json: ``{"images": ["<base64>", ...], "top_k": 3}``.
The body itself is already bounded by the limit middleware; decoding the images is the core's job.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

from ..core.images import choices
from ..core.offload import Offloader
from ..core.types import ImageInputs
from ..errors import InvalidInput
from ..settings import Settings
from .limits import check_json_size, read_body
from .schemas import ImagesRequest

# curl --data-binary sends application/x-www-form-urlencoded unless told otherwise: treat it as a raw image.
RAW_TYPES = ("application/octet-stream", "application/x-www-form-urlencoded", "")
MULTIPART = "multipart/form-data"
JSON = "application/json"
DATA_URL_SEPARATOR = ";base64,"


@dataclass(frozen=True)
class Upload:
    images: list[bytes]
    top_k: int | None = None
    raw: bool = False  # one image sent as the whole body
    resize: str | None = None  # preprocessing overrides and the echo flag, from the body (JSON or form fields)
    normalize: str | None = None
    return_input: bool = False


@dataclass(frozen=True)
class Options:
    """Request options from the query string; each wins over the same option in the body."""

    top_k: int | None = None
    resize: str | None = None
    normalize: str | None = None
    return_input: bool | None = None


def task_inputs(upload: Upload, options: Options) -> ImageInputs:
    """The core's inputs for an upload: its images with the preprocessing overrides it asked for."""
    resize, normalize = choices(options.resize or upload.resize, options.normalize or upload.normalize)
    echo = upload.return_input if options.return_input is None else options.return_input
    return ImageInputs(encoded=upload.images, resize=resize, normalize=normalize, echo=echo)


def parse_flag(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise InvalidInput(f"{name} must be true or false, got {value!r}")


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


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
    return Upload(images, request.top_k, False, request.resize, request.normalize, request.return_input)


def _parse_top_k(value: str) -> int:
    top_k = int(value) if value.isascii() and value.isdigit() else 0
    if top_k < 1:
        raise InvalidInput(f"top_k must be a positive integer, got {value!r}")
    return top_k


FORM_FIELDS = ("top_k", "resize", "normalize", "return_input")


async def _read_multipart(request: Request, settings: Settings) -> Upload:
    images: list[bytes] = []
    fields: dict[str, str] = {}
    try:
        async with request.form(max_files=settings.max_batch_images, max_fields=8) as form:
            for field, value in form.multi_items():
                if isinstance(value, UploadFile):
                    images.append(await value.read())
                elif field in FORM_FIELDS:
                    fields[field] = value
                else:
                    raise InvalidInput(
                        f"unexpected form field {field!r}: send image files and optionally {', '.join(FORM_FIELDS)}"
                    )
    except HTTPException as exc:  # starlette's multipart parser reports malformed bodies this way
        raise InvalidInput(f"malformed multipart body: {exc.detail}") from exc
    top_k = _parse_top_k(fields["top_k"]) if "top_k" in fields else None
    echo = parse_flag("return_input", fields.get("return_input", ""))
    return Upload(images, top_k, False, fields.get("resize"), fields.get("normalize"), echo)


async def read_upload(request: Request, settings: Settings, offload: Offloader) -> Upload:
    kind = media_type(request)
    if kind == MULTIPART:
        return await _read_multipart(request, settings)
    if kind == JSON or kind.endswith("+json"):
        body = await read_body(request, offload)
        return await offload.sized(len(body), parse_json_upload, body, settings.max_json_bytes)
    if kind.startswith("image/") or kind in RAW_TYPES:
        body = await read_body(request, offload)
        if not body:
            raise InvalidInput("the request body is empty: send an image file")
        return Upload([body], raw=True)
    raise InvalidInput(
        f"unsupported Content-Type {kind!r}: send an image (image/png, image/jpeg, ...), "
        "multipart/form-data files or application/json with base64 images"
    )
