"""The HTTP encoding of V2 inference: a JSON header, optionally followed by binary tensor data.

With the binary tensor data extension the header's length is in ``Inference-Header-Content-Length`` and each
binary input names its byte count in ``parameters.binary_data_size``; the chunks follow the header in input
order. In JSON, numbers are flat or nested lists and BYTES elements are base64 strings (JSON strings cannot
hold arbitrary bytes). What the request means is `pixelserve.service.protocol.v2.infer`'s business; this module only
turns bytes into its `InferRequest` and its `InferResponse` back into bytes.

Request compression (``Content-Encoding: gzip|deflate``, as tritonclient can send) is inflated with the same
byte limit as the body, so a compressed bomb stops at the limit. JSON is parsed by orjson: fast, and deep
nesting is a clean error instead of a recursion crash.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from typing import Any

import numpy as np
import orjson
import simdjson

from ..core.types import ModelRef
from ..errors import InvalidInput, PayloadTooLarge
from ..protocol.v2.infer import (
    InferRequest,
    InferResponse,
    InputTensor,
    OutputTensor,
    RequestedOutput,
    class_count,
)
from ..protocol.v2.tensors import BYTES, V2_TYPES, is_count, join_bytes, split_bytes
from .limits import check_json_size

HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_CONTENT_TYPE = "application/octet-stream"
JSON_CONTENT_TYPE = "application/json"
BINARY_OUTPUT = "binary_data_output"  # request parameter: the default for outputs that do not say

_REQUEST_KEYS = {"id", "parameters", "inputs", "outputs"}
_INPUT_KEYS = {"name", "shape", "datatype", "parameters", "data"}
_OUTPUT_KEYS = {"name", "parameters"}


# Inflating reads at most _INFLATE_IN compressed bytes and writes at most _INFLATE_OUT inflated bytes per call,
# so no single call holds the GIL for long (zlib copies its whole output into one bytes object under the GIL:
# 64 MiB in one call held it ~120 ms) and the unconsumed input zlib copies back stays small.
_INFLATE_IN = 256 * 1024
_INFLATE_OUT = 1024 * 1024


def inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """Undo ``Content-Encoding`` without ever holding more than ``limit`` inflated bytes. Runs on a worker
    thread: the pieces are joined with bytes.join, which releases the GIL for the copy."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise InvalidInput(f"unsupported Content-Encoding {encoding!r}: use gzip, deflate or none")
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    pieces: list[bytes] = []
    size = 0
    view = memoryview(body)
    try:
        for start in range(0, len(view), _INFLATE_IN):
            data: bytes | memoryview = view[start : start + _INFLATE_IN]
            while data:
                piece = inflater.decompress(data, _INFLATE_OUT)
                size += len(piece)
                if size > limit:
                    raise PayloadTooLarge(f"inflated request body is larger than the limit of {limit} bytes")
                pieces.append(piece)
                data = inflater.unconsumed_tail
        pieces.append(inflater.flush())
    except zlib.error as exc:
        raise InvalidInput(f"body is not valid {encoding} data: {exc}") from exc
    if size + len(pieces[-1]) > limit:
        raise PayloadTooLarge(f"inflated request body is larger than the limit of {limit} bytes")
    return b"".join(pieces)


def parse_json(data: bytes | memoryview, what: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"invalid {what}: the body is not JSON: {exc}") from exc


def _invalid(message: str) -> InvalidInput:
    return InvalidInput(f"invalid inference request: {message}")


def _plain(value: Any) -> Any:
    """A lazily parsed simdjson value as plain Python."""
    if isinstance(value, simdjson.Object):
        return value.as_dict()
    if isinstance(value, simdjson.Array):
        return value.as_list()
    return value


def _typed(name: Any, datatype: Any, values: np.ndarray) -> np.ndarray:
    """JSON numbers in their declared integer datatype, checked here, off the event loop: checking millions
    of float64 values on the loop (``values % 1``) took longer than parsing them. Other datatypes stay float64."""
    dtype = V2_TYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is None or dtype.kind not in "iu":
        return values
    limits = np.iinfo(dtype)
    fits = not values.size or (values.min() >= limits.min and values.max() <= limits.max)
    typed = values.astype(dtype) if fits else values
    if not fits or not np.array_equal(typed, values):
        raise InvalidInput(f"input {name!r}: {datatype} values must be whole numbers in {limits.min}..{limits.max}")
    return typed


def _lazy_input(value: Any) -> Any:
    """One input tensor; numeric `data` goes straight into a numpy buffer, never one Python object per
    number, so a big JSON tensor costs what its numbers weigh and holds the GIL only while simdjson copies."""
    if not isinstance(value, simdjson.Object):
        return _plain(value)
    tensor = {key: _plain(value[key]) for key in value if key != "data"}
    if "data" in value:
        data = value["data"]
        if isinstance(data, simdjson.Array) and tensor.get("datatype") != BYTES:
            try:
                values = np.frombuffer(data.as_buffer(of_type="d"), dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise InvalidInput(
                    f"input {tensor.get('name')!r}: {tensor.get('datatype')} data must be numbers"
                ) from exc
            tensor["data"] = _typed(tensor.get("name"), tensor.get("datatype"), values)
        else:
            tensor["data"] = _plain(data)
    return tensor


def _load_header(header: memoryview) -> Any:
    try:
        doc = simdjson.Parser().parse(bytes(header))
    except (ValueError, RuntimeError) as exc:  # simdjson's errors: not JSON, too deep, a number out of range
        raise _invalid(f"the header is not JSON: {exc}") from exc
    if not isinstance(doc, simdjson.Object):
        return _plain(doc)
    parsed = {}
    for key in doc:
        value = doc[key]
        is_inputs = key == "inputs" and isinstance(value, simdjson.Array)
        parsed[key] = [_lazy_input(v) for v in value] if is_inputs else _plain(value)
    return parsed


def _object(value: Any, where: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid(f"{where} must be a JSON object")
    extra = sorted(set(value) - allowed)
    if extra:
        raise _invalid(f"{where} has unknown field {extra[0]!r}")
    return value


def _field(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any = None) -> Any:
    value = obj.get(key, default)
    if value is None and default is None and key not in obj:
        raise _invalid(f"{where}.{key} is required")
    if value is not None and not isinstance(value, kind):
        raise _invalid(f"{where}.{key} has the wrong type")
    return value


def _b64_elements(name: str, data: list[Any]) -> list[Any]:
    """JSON BYTES elements are base64 text; nesting is kept for the protocol's own element count."""
    out: list[Any] = []
    for i, text in enumerate(data):
        if isinstance(text, list):
            out.append(_b64_elements(name, text))
            continue
        if not isinstance(text, str):
            raise InvalidInput(f"input {name!r}: BYTES element {i} must be a base64 string")
        try:
            out.append(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput(f"input {name!r}: BYTES element {i} is not valid base64: {exc}") from exc
    return out


def _inputs(raw_inputs: Any, binary: memoryview) -> list[InputTensor]:
    if not isinstance(raw_inputs, list):
        raise _invalid("inputs must be a list")
    tensors = []
    offset = 0
    for i, raw in enumerate(raw_inputs):
        where = f"inputs[{i}]"
        tensor = _object(raw, where, _INPUT_KEYS)
        name = _field(tensor, "name", str, where)
        datatype = _field(tensor, "datatype", str, where)
        shape = _field(tensor, "shape", list, where)
        parameters = _field(tensor, "parameters", dict, where, {})
        size = parameters.get("binary_data_size")
        if size is not None:
            if not is_count(size) or isinstance(size, str) or offset + size > len(binary):
                raise InvalidInput(f"input {name!r}: binary_data_size {size!r} exceeds the binary data")
            data: Any = binary[offset : offset + size]
            if datatype == BYTES:  # framed elements, split here with the rest of decoding, off the event loop
                data = split_bytes(data)
            offset += size
        elif isinstance(tensor.get("data"), list | np.ndarray):
            data = _b64_elements(name, tensor["data"]) if datatype == BYTES else tensor["data"]
        else:
            raise InvalidInput(f"input {name!r} has neither data nor binary_data_size")
        tensors.append(InputTensor(name, datatype, shape, data))
    if offset != len(binary):
        raise InvalidInput(f"{len(binary) - offset} bytes of binary data are not claimed by any input")
    return tensors


def _outputs(raw_outputs: Any) -> list[RequestedOutput] | None:
    if raw_outputs is None:
        return None
    if not isinstance(raw_outputs, list):
        raise _invalid("outputs must be a list")
    outputs = []
    for i, raw in enumerate(raw_outputs):
        where = f"outputs[{i}]"
        wanted = _object(raw, where, _OUTPUT_KEYS)
        name = _field(wanted, "name", str, where)
        parameters = _field(wanted, "parameters", dict, where, {})
        binary = parameters.get("binary_data")
        outputs.append(
            RequestedOutput(name, class_count(name, parameters.get("classification", 0)),
                            None if binary is None else bool(binary))
        )  # fmt: skip
    return outputs


def decode_request(body: bytes, header_length: str | None, model: ModelRef, json_limit: int) -> InferRequest:
    """Parse a whole V2 infer body; every malformation is an InvalidInput naming the part at fault. The JSON
    header has its own limit, checked before parsing: tensors that large belong in binary data."""
    view = memoryview(body)
    if header_length is None:
        header, binary = view, view[len(view) :]
    else:
        if not is_count(header_length.strip()) or int(header_length) > len(body):
            raise InvalidInput(f"{HEADER_LENGTH} {header_length!r} is not a length within the body")
        split = int(header_length)
        header, binary = view[:split], view[split:]
    check_json_size(len(header), json_limit, "the JSON part of the request",
                    "send large tensors as binary data (binary_data_size) or images as BYTES")  # fmt: skip
    request = _object(_load_header(header), "the request", _REQUEST_KEYS)
    request_id = _field(request, "id", str, "the request", "")
    parameters = _field(request, "parameters", dict, "the request", {})
    inputs = _inputs(_field(request, "inputs", list, "the request"), binary)
    return InferRequest(model, inputs, _outputs(request.get("outputs")), request_id, parameters)


def _binary_payload(out: OutputTensor) -> bytes:
    if out.datatype == BYTES:
        return join_bytes(list(out.array.ravel()))
    return np.ascontiguousarray(out.array, dtype=V2_TYPES[out.datatype]).tobytes()


def _json_data(out: OutputTensor) -> list[Any]:
    if out.datatype == BYTES:
        return [item.decode("utf-8", errors="replace") for item in out.array.ravel()]
    return out.array.ravel().tolist()


def encode_response(response: InferResponse, binary_default: bool) -> tuple[bytes, dict[str, str]]:
    """The V2 response body and its headers; binary outputs follow the JSON header in output order."""
    chunks: list[bytes] = []
    tensors = []
    for out in response.outputs:
        tensor: dict[str, Any] = {"name": out.name, "datatype": out.datatype, "shape": list(out.array.shape)}
        if binary_default if out.binary is None else out.binary:
            payload = _binary_payload(out)
            tensor["parameters"] = {"binary_data_size": len(payload)}
            chunks.append(payload)
        else:
            tensor["data"] = _json_data(out)
        tensors.append(tensor)
    body: dict[str, Any] = {"model_name": response.model_name, "model_version": response.model_version}
    if response.id:
        body["id"] = response.id
    if response.parameters:
        body["parameters"] = response.parameters
    body["outputs"] = tensors
    header = orjson.dumps(body)
    if not chunks:
        return header, {"Content-Type": JSON_CONTENT_TYPE}
    return header + b"".join(chunks), {"Content-Type": BINARY_CONTENT_TYPE, HEADER_LENGTH: str(len(header))}
