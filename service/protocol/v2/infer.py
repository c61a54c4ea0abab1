"""One V2 inference, wire-neutral: a decoded request in, the output tensors out.

The adapters turn their wire format into an `InferRequest` (REST: the JSON header and binary chunks; gRPC:
the protobuf message) and encode the `InferResponse` back; everything a request means is decided here:
which input and datatypes are accepted, how tensor data becomes the core's `ImageInputs`, which outputs
answer and how the classification extension rewrites one.

Tensor data arrives in one of two forms: ``bytes`` (raw little-endian elements, or Triton's length-prefixed
BYTES framing) or a sequence of values (numbers, flat or nested, or one ``bytes`` object per BYTES element,
already decoded from the transport's own text encoding).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pixelserve.modelspec import INPUT_IMAGE, OUTPUT_PROBABILITIES

from ...core.images import Limits, check_count, choices
from ...core.types import Core, ImageInputs, ModelRef
from ...errors import InvalidInput
from .tensors import (
    BYTES,
    IMAGE_TYPES,
    V2_TYPES,
    checked_shape,
    classification_strings,
    element_count,
    split_bytes,
    v2_type,
)


@dataclass(slots=True)
class InputTensor:
    name: str
    datatype: str
    shape: list[int]
    data: bytes | memoryview | np.ndarray | Sequence[Any]


@dataclass(slots=True)
class RequestedOutput:
    name: str
    class_count: int = 0  # > 0: the top class_count classification strings instead of the tensor
    binary: bool | None = None  # the transport's binary choice for this output, if the client made one


@dataclass(slots=True)
class InferRequest:
    model: ModelRef
    inputs: list[InputTensor]
    outputs: list[RequestedOutput] | None = None  # None: every output of the model
    id: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class OutputTensor:
    name: str
    datatype: str
    array: np.ndarray  # numeric, or an object array of bytes for BYTES
    binary: bool | None = None


@dataclass(slots=True)
class InferResponse:
    model_name: str
    model_version: str
    id: str
    outputs: list[OutputTensor]
    parameters: dict[str, str] = field(default_factory=dict)  # the preprocessing encoded images got


def class_count(name: str, value: Any) -> int:
    """The classification parameter of a requested output: a non-negative integer (0 means the tensor)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"output {name!r}: classification must be a non-negative integer, got {value!r}")
    return value


def _flatten(data: Sequence[Any]) -> list[Any]:
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list | tuple):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _bytes_elements(tensor: InputTensor, shape: list[int], count: int) -> ImageInputs:
    if not shape or any(d != 1 for d in shape[1:]):
        raise InvalidInput(f"BYTES input of shape {shape} needs shape [N] or [N, 1] with N images")
    if isinstance(tensor.data, bytes | memoryview):
        items = split_bytes(tensor.data)
    else:
        items = _flatten(tensor.data)
        if not all(isinstance(item, bytes) for item in items):
            raise InvalidInput(f"input {tensor.name!r}: BYTES elements must be encoded image files")
    if len(items) != count:
        raise InvalidInput(f"input {tensor.name!r}: shape says {count} BYTES elements, the data holds {len(items)}")
    return ImageInputs(encoded=items)


def _numbers(tensor: InputTensor, count: int, dtype: np.dtype) -> np.ndarray:
    """Numbers from a transport: a float64 buffer already (REST JSON), or a sequence (gRPC typed contents)."""
    if isinstance(tensor.data, np.ndarray):
        values = tensor.data
    else:
        flat = _flatten(tensor.data)
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in flat):
            raise InvalidInput(f"input {tensor.name!r}: {tensor.datatype} data must be numbers")
        values = np.asarray(flat, dtype=np.float64)
    if len(values) != count:
        raise InvalidInput(f"input {tensor.name!r}: shape says {count} elements, data holds {len(values)}")
    if dtype == np.uint8 and (values.size and (values.min() < 0 or values.max() > 255 or (values % 1).any())):
        raise InvalidInput(f"input {tensor.name!r}: UINT8 values must be whole numbers in 0..255")
    return values.astype(dtype)


def image_inputs(tensor: InputTensor, parameters: dict[str, Any] | None = None) -> ImageInputs:
    """The one image input as core inputs: UINT8/FP32 pixels (NHWC, checked against the model by the core,
    taken as prepared) or BYTES holding one encoded image file per element, preprocessed as model.json
    declares unless the request parameters `resize` / `normalize` say otherwise."""
    if tensor.datatype not in IMAGE_TYPES:
        raise InvalidInput(
            f"input {tensor.name!r}: datatype {tensor.datatype} is not accepted; send UINT8 or FP32 pixels "
            "(NHWC) or BYTES encoded images"
        )
    shape = checked_shape(tensor.name, tensor.shape)
    count = element_count(tensor.name, shape)
    if tensor.datatype == BYTES:
        resize, normalize = choices((parameters or {}).get("resize"), (parameters or {}).get("normalize"))
        encoded = _bytes_elements(tensor, shape, count).encoded
        return ImageInputs(encoded=encoded, resize=resize, normalize=normalize)
    dtype = V2_TYPES[tensor.datatype]
    if isinstance(tensor.data, bytes | memoryview):  # raw little-endian elements
        if len(tensor.data) != count * dtype.itemsize:
            raise InvalidInput(
                f"input {tensor.name!r}: shape {shape} of {tensor.datatype} needs {count * dtype.itemsize} "
                f"bytes, got {len(tensor.data)}"
            )
        array = np.frombuffer(tensor.data, dtype=dtype)
    else:
        array = _numbers(tensor, count, dtype)
    return ImageInputs(tensor=array.reshape(shape))


def check_declared_images(shape: Sequence[int], limits: Limits) -> None:
    """Refuse a tensor whose declared batch is over the image limit before its data is read: a transport that
    must convert typed numbers (gRPC contents) would otherwise turn millions of them into an array first."""
    if shape and shape[0] > limits.max_images:
        check_count(int(shape[0]), limits)


def _the_input(request: InferRequest) -> InputTensor:
    if not request.inputs:
        raise InvalidInput("the request has no inputs: send one named 'image'")
    names = [t.name for t in request.inputs]
    if len(set(names)) != len(names):
        raise InvalidInput(f"input {next(n for n in names if names.count(n) > 1)!r} is given twice")
    unknown = sorted(set(names) - {INPUT_IMAGE})
    if unknown:
        raise InvalidInput(f"unknown input {unknown[0]!r}: the model's only input is {INPUT_IMAGE!r}")
    return request.inputs[0]


async def infer(core: Core, request: InferRequest) -> InferResponse:
    """Validate, run through the core (decode, batch, onnxruntime), and pick and shape the outputs."""
    inputs = image_inputs(_the_input(request), request.parameters)
    wanted = [o.name for o in request.outputs] if request.outputs is not None else None
    result = await core.infer(request.model, inputs, outputs=wanted)
    if request.outputs is None:
        tensors = [OutputTensor(n, v2_type(a.dtype), a) for n, a in result.outputs.items()]
    else:
        tensors = []
        for out in request.outputs:
            array = result.outputs[out.name]
            if out.class_count:
                labels = result.labels if out.name == OUTPUT_PROBABILITIES else None
                tensors.append(OutputTensor(out.name, BYTES, classification_strings(array, out.class_count, labels),
                                            out.binary))  # fmt: skip
            else:
                tensors.append(OutputTensor(out.name, v2_type(array.dtype), array, out.binary))
    applied = {} if result.applied is None else {"resize": result.applied.resize, "normalize": result.applied.normalize}
    return InferResponse(result.model.name, str(result.model.version), request.id, tensors, applied)
