"""Wire-neutral pieces of KServe V2 / the Open Inference Protocol, shared by the REST and gRPC adapters so
both speak it identically: datatype names, Triton's BYTES framing, the classification extension's strings,
repository state names and the platform the model metadata reports."""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

import numpy as np

from pixelserve.service.errors import InvalidInput
from pixelserve.service.types import ModelState

PLATFORM = "onnxruntime_onnx"
BACKEND = "onnxruntime"
CLASSIFICATION = "classification"

V2_TYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
_V2_NAMES = {dtype: name for name, dtype in V2_TYPES.items()}
# Inputs an image model takes: pixels (NHWC) or encoded image files, one BYTES element per image.
IMAGE_TYPES = ("UINT8", "FP32", "BYTES")

_REPOSITORY_STATES: dict[ModelState, str] = {"ready": "READY", "loading": "LOADING", "unloading": "UNLOADING"}
_LENGTH = struct.Struct("<I")


def v2_type(dtype: str | np.dtype) -> str:
    """A model.json dtype name or numpy dtype -> the V2 datatype name (object arrays are BYTES)."""
    dtype = np.dtype(dtype)
    if dtype == np.dtype(object):
        return "BYTES"
    return _V2_NAMES[dtype.newbyteorder("<")]


def repository_state(state: ModelState) -> str:
    """Triton's repository index states; failed and unavailable versions are both UNAVAILABLE."""
    return _REPOSITORY_STATES.get(state, "UNAVAILABLE")


def element_count(shape: Sequence[int]) -> int:
    if any(d < 0 for d in shape):
        raise InvalidInput(f"input shape must not have negative dimensions, got {list(shape)}")
    return math.prod(shape)


def split_bytes(raw: bytes) -> list[bytes]:
    """Triton's raw BYTES layout: each element is a 4-byte little-endian length, then that many bytes."""
    items: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if offset + _LENGTH.size > len(raw):
            raise InvalidInput("raw BYTES input ends inside a length prefix")
        (size,) = _LENGTH.unpack_from(raw, offset)
        offset += _LENGTH.size
        if offset + size > len(raw):
            raise InvalidInput("raw BYTES input is shorter than its length prefixes say")
        items.append(raw[offset : offset + size])
        offset += size
    return items


def join_bytes(items: Sequence[bytes]) -> bytes:
    return b"".join(_LENGTH.pack(len(item)) + item for item in items)


def classification_strings(values: np.ndarray, count: int, labels: Sequence[str] | None) -> np.ndarray:
    """Triton's classification extension: per batch row the top `count` ``"value:index[:label]"`` strings
    (Triton's ``"%f:%d:%s"``), as a [batch, count] object array of bytes."""
    if values.ndim != 2:
        raise InvalidInput(f"classification needs a [batch, classes] output, this one has shape {list(values.shape)}")
    count = min(count, values.shape[1])
    order = np.argsort(-values, axis=1, kind="stable")[:, :count]
    out = np.empty((values.shape[0], count), dtype=object)
    for r, (row, indices) in enumerate(zip(values, order, strict=True)):
        for c, i in enumerate(indices.tolist()):
            label = f":{labels[i]}" if labels and i < len(labels) else ""
            out[r, c] = f"{row[i]:f}:{i}{label}".encode()
    return out
