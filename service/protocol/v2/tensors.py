"""Tensor rules of the V2 protocol: datatype names, shapes, Triton's BYTES framing and the classification
extension's strings. Every wire number is checked here before numpy sees it, so a hostile shape is a clear
InvalidInput, never an overflow or a 500."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from ...errors import InvalidInput

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
BYTES = "BYTES"
# Inputs an image model takes: pixels (NHWC) or encoded image files, one BYTES element per image.
IMAGE_TYPES = ("UINT8", "FP32", BYTES)
MAX_RANK = 8  # image inputs are rank 1-4; anything deeper is a malformed request, not a tensor
MAX_ELEMENTS = 2**40  # far above any request limit, far below int64 overflow

_LENGTH = struct.Struct("<I")


def v2_type(dtype: str | np.dtype) -> str:
    """A model.json dtype name or numpy dtype -> the V2 datatype name (object arrays are BYTES)."""
    dtype = np.dtype(dtype)
    if dtype == np.dtype(object):
        return BYTES
    return _V2_NAMES[dtype.newbyteorder("<")]


def is_count(value: Any) -> bool:
    """A non-negative integer from a wire: a real int (not a bool), or ASCII digits only ('²' is no number)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 0
    return isinstance(value, str) and value.isascii() and value.isdigit()


def checked_shape(name: str, shape: Any) -> list[int]:
    """A shape from a wire as a list of ints, refused before numpy sees it when it is not a shape."""
    if not isinstance(shape, Sequence) or isinstance(shape, str | bytes):
        raise InvalidInput(f"input {name!r}: shape must be a list of dimensions, got {shape!r}")
    if len(shape) > MAX_RANK:
        raise InvalidInput(f"input {name!r}: shape has {len(shape)} dimensions; at most {MAX_RANK} are accepted")
    dims = []
    for d in shape:
        if isinstance(d, bool) or not isinstance(d, int):
            raise InvalidInput(f"input {name!r}: shape dimensions must be integers, got {list(shape)}")
        if d < 0:
            raise InvalidInput(f"input shape must not have negative dimensions, got {list(shape)}")
        dims.append(int(d))
    return dims


def element_count(name: str, shape: Sequence[int]) -> int:
    """The product of a checked shape, refused when it could overflow a buffer size."""
    count = 1
    for d in shape:
        count *= d
        if count > MAX_ELEMENTS:
            raise InvalidInput(f"input {name!r}: shape {list(shape)} holds more elements than any request can")
    return count


def split_bytes(raw: bytes | memoryview) -> list[bytes]:
    """Triton's raw BYTES layout: each element is a 4-byte little-endian length, then that many bytes."""
    items: list[bytes] = []
    offset = 0
    size_of = len(raw)
    while offset < size_of:
        if offset + _LENGTH.size > size_of:
            raise InvalidInput("raw BYTES input ends inside a length prefix")
        (size,) = _LENGTH.unpack_from(raw, offset)
        offset += _LENGTH.size
        if offset + size > size_of:
            raise InvalidInput("raw BYTES input is shorter than its length prefixes say")
        items.append(bytes(raw[offset : offset + size]))
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
