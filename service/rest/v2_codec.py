"""KServe V2 / Open Inference Protocol tensors over HTTP: JSON and the binary tensor data extension.

Request body: a JSON header, optionally followed by raw tensor bytes. With the binary extension the header's
length is in ``Inference-Header-Content-Length`` and each binary input names its byte count in
``parameters.binary_data_size``; the chunks follow the header in input order.

Tensor encodings: UINT8 / FP32 as little-endian row-major bytes (binary) or a flat or nested number list
(JSON). BYTES elements carry encoded images: in binary each element is a 4-byte little-endian length and the
bytes; in JSON each element is a base64 string (JSON strings cannot hold arbitrary bytes).
Request compression (``Content-Encoding: gzip|deflate``, as tritonclient can send) is inflated with the same
byte limit as the body, so a compressed bomb stops at the limit.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pixelserve.service.errors import InvalidInput, PayloadTooLarge
from pixelserve.service.kserve import IMAGE_TYPES, V2_TYPES, element_count, join_bytes, split_bytes, v2_type
from pixelserve.service.types import ImageInputs

HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_CONTENT_TYPE = "application/octet-stream"
JSON_CONTENT_TYPE = "application/json"


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputTensor(_Wire):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    data: list[Any] | None = None


class RequestedOutput(_Wire):
    name: str
    parameters: dict[str, Any] = Field(default_factory=dict)


class InferRequest(_Wire):
    id: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    inputs: list[InputTensor] = Field(min_length=1)
    outputs: list[RequestedOutput] | None = None


@dataclass(frozen=True)
class DecodedRequest:
    request: InferRequest
    inputs: dict[str, ImageInputs]


@dataclass
class OutputTensor:
    name: str
    array: np.ndarray  # numeric, or an object array of bytes for BYTES
    binary: bool


def inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """Undo ``Content-Encoding`` without ever holding more than ``limit`` inflated bytes."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise InvalidInput(f"unsupported Content-Encoding {encoding!r}: use gzip, deflate or none")
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidInput(f"body is not valid {encoding} data: {exc}") from exc
    if len(out) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"inflated request body is larger than the limit of {limit} bytes")
    return out


def _flatten(data: list[Any]) -> list[Any]:
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _json_bytes_elements(tensor: InputTensor, count: int) -> list[bytes]:
    flat = _flatten(tensor.data or [])
    if len(flat) != count:
        raise InvalidInput(f"input {tensor.name!r}: shape says {count} elements, data holds {len(flat)}")
    items = []
    for i, text in enumerate(flat):
        if not isinstance(text, str):
            raise InvalidInput(f"input {tensor.name!r}: BYTES element {i} must be a base64 string")
        try:
            items.append(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput(f"input {tensor.name!r}: BYTES element {i} is not valid base64: {exc}") from exc
    return items


def _json_numbers(tensor: InputTensor, count: int, dtype: np.dtype) -> np.ndarray:
    flat = _flatten(tensor.data or [])
    if len(flat) != count:
        raise InvalidInput(f"input {tensor.name!r}: shape says {count} elements, data holds {len(flat)}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in flat):
        raise InvalidInput(f"input {tensor.name!r}: {tensor.datatype} data must be numbers")
    values = np.asarray(flat, dtype=np.float64)
    if dtype == np.uint8 and (values.size and (values.min() < 0 or values.max() > 255 or (values % 1).any())):
        raise InvalidInput(f"input {tensor.name!r}: UINT8 values must be whole numbers in 0..255")
    return values.astype(dtype).reshape(tensor.shape)


def _to_image_inputs(tensor: InputTensor, raw: bytes | None) -> ImageInputs:
    if tensor.datatype not in IMAGE_TYPES:
        raise InvalidInput(
            f"input {tensor.name!r}: datatype {tensor.datatype} is not accepted; send UINT8 or FP32 pixels "
            "(NHWC) or BYTES encoded images"
        )
    count = element_count(tensor.shape)
    if tensor.datatype == "BYTES":
        images = _json_bytes_elements(tensor, count) if raw is None else split_bytes(raw)
        if len(images) != count:
            raise InvalidInput(
                f"input {tensor.name!r}: shape says {count} BYTES elements, the data holds {len(images)}"
            )
        return ImageInputs(encoded=images)
    dtype = V2_TYPES[tensor.datatype]
    if raw is None:
        return ImageInputs(tensor=_json_numbers(tensor, count, dtype))
    if len(raw) != count * dtype.itemsize:
        raise InvalidInput(
            f"input {tensor.name!r}: shape {tensor.shape} of {tensor.datatype} needs {count * dtype.itemsize} "
            f"bytes, got {len(raw)}"
        )
    return ImageInputs(tensor=np.frombuffer(raw, dtype=dtype).reshape(tensor.shape))


def decode_request(body: bytes, header_length: str | None) -> DecodedRequest:
    """Parse a whole V2 infer body; every malformation is an InvalidInput naming the input at fault."""
    if header_length is None:
        header, binary = body, b""
    else:
        if not header_length.strip().isdigit() or int(header_length) > len(body):
            raise InvalidInput(f"{HEADER_LENGTH} {header_length!r} is not a length within the body")
        split = int(header_length)
        header, binary = body[:split], body[split:]
    try:
        request = InferRequest.model_validate_json(header)
    except ValidationError as exc:
        details = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        raise InvalidInput(f"invalid inference request: {details}") from exc
    inputs: dict[str, ImageInputs] = {}
    offset = 0
    for tensor in request.inputs:
        size = tensor.parameters.get("binary_data_size")
        raw = None
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(binary):
                raise InvalidInput(f"input {tensor.name!r}: binary_data_size {size!r} exceeds the binary data")
            raw = binary[offset : offset + size]
            offset += size
        elif tensor.data is None:
            raise InvalidInput(f"input {tensor.name!r} has neither data nor binary_data_size")
        if tensor.name in inputs:
            raise InvalidInput(f"input {tensor.name!r} is given twice")
        inputs[tensor.name] = _to_image_inputs(tensor, raw)
    if offset != len(binary):
        raise InvalidInput(f"{len(binary) - offset} bytes of binary data are not claimed by any input")
    return DecodedRequest(request, inputs)


def _binary_payload(array: np.ndarray) -> bytes:
    if array.dtype == object:
        return join_bytes(list(array.ravel()))
    return np.ascontiguousarray(array, dtype=V2_TYPES[v2_type(array.dtype)]).tobytes()


def _json_data(array: np.ndarray) -> list[Any]:
    if array.dtype == object:
        return [item.decode("utf-8", errors="replace") for item in array.ravel()]
    return array.ravel().tolist()


def encode_response(
    model_name: str, model_version: int, request_id: str | None, outputs: list[OutputTensor]
) -> tuple[bytes, dict[str, str]]:
    """The V2 response body and its headers; binary outputs follow the JSON header in output order."""
    chunks: list[bytes] = []
    tensors = []
    for out in outputs:
        tensor: dict[str, Any] = {
            "name": out.name,
            "datatype": v2_type(out.array.dtype),
            "shape": list(out.array.shape),
        }
        if out.binary:
            payload = _binary_payload(out.array)
            tensor["parameters"] = {"binary_data_size": len(payload)}
            chunks.append(payload)
        else:
            tensor["data"] = _json_data(out.array)
        tensors.append(tensor)
    body: dict[str, Any] = {"model_name": model_name, "model_version": str(model_version), "outputs": tensors}
    if request_id is not None:
        body["id"] = request_id
    header = json.dumps(body, separators=(",", ":")).encode()
    if not chunks:
        return header, {"Content-Type": JSON_CONTENT_TYPE}
    return header + b"".join(chunks), {"Content-Type": BINARY_CONTENT_TYPE, HEADER_LENGTH: str(len(header))}
