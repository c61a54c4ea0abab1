"""Whatever a caller holds -> the images of one request: encoded files, or one tensor batch.

Paths and bytes are sent as the files they are (the server sniffs PNG, JPEG, BMP and GIF); PIL images and
numpy arrays are encoded as lossless PNG, so the server decodes and prepares every kind alike, over both
transports. With ``tensors=True`` arrays go over gRPC as raw pixels instead: no encoding on either side, but
the server takes them as already prepared (the model's size and colour mode; no resize or normalize).

One array is one image when it is HW, or HWC with 1, 3 or 4 channels; NHWC (or another 3-D NHW shape) is a
batch. Float arrays are pixel values in 0..255, as the server takes float32 tensors.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

ImageLike = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, "PILImage", np.ndarray]
Images = ImageLike | Sequence[ImageLike]
CHANNELS = (1, 3, 4)


@dataclass(frozen=True)
class Batch:
    """The images of one request: `encoded` files or one NHWC `tensor` (uint8 or float32), never both."""

    encoded: list[bytes] | None = None
    tensor: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.encoded) if self.encoded is not None else int(self.tensor.shape[0])  # type: ignore[union-attr]


def _is_pil(value: Any) -> bool:
    module = type(value).__module__
    return module.startswith("PIL.") and hasattr(value, "save") and hasattr(value, "mode")


def _single_array(array: np.ndarray) -> bool:
    return array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in CHANNELS)


def _arrays(array: np.ndarray) -> list[np.ndarray]:
    """An array as the images it holds."""
    if _single_array(array):
        return [array]
    if array.ndim in (3, 4):
        return list(array)
    raise ValueError(f"an image array is HW, HWC or a batch NHWC/NHW; got shape {array.shape}")


def _split(images: Images) -> list[Any]:
    """The images of the argument: one (a path, bytes, a PIL image, one array) or many."""
    if isinstance(images, str | bytes | bytearray | memoryview | os.PathLike) or _is_pil(images):
        return [images]
    if isinstance(images, np.ndarray):
        return list(_arrays(images))
    items = list(images)
    if not items:
        raise ValueError("no images: pass a path, bytes, a PIL image, an array or a list of them")
    return items


def pixels_uint8(array: np.ndarray) -> np.ndarray:
    """Pixel values as uint8: integers as they are, floats (0..255) rounded and clipped."""
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating):
        return np.clip(np.rint(array), 0, 255).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_:
        return np.clip(array, 0, 255).astype(np.uint8)
    raise ValueError(f"image arrays hold numbers, not {array.dtype}")


def png_bytes(image: Any) -> bytes:
    """A PIL image or an HW/HWC array as a PNG file (lossless, so the server sees the same pixels)."""
    from PIL import Image

    if isinstance(image, np.ndarray):
        pixels = pixels_uint8(image)
        if pixels.ndim == 3 and pixels.shape[-1] == 1:
            pixels = pixels[..., 0]
        image = Image.fromarray(np.ascontiguousarray(pixels))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _encoded(item: Any) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, bytearray | memoryview):
        return bytes(item)
    if isinstance(item, str | os.PathLike):
        return Path(item).read_bytes()
    if _is_pil(item):
        return png_bytes(item)
    if isinstance(item, np.ndarray):
        if not _single_array(item):
            raise ValueError(f"in a list, each array is one HW or HWC image; got shape {item.shape}")
        return png_bytes(item)
    raise TypeError(f"cannot send {type(item).__name__} as an image: use a path, bytes, a PIL image or an array")


def _wire_tensor(batch: np.ndarray) -> np.ndarray:
    """NHWC in a wire dtype: float32 for float pixels (the server rounds them), uint8 for the rest."""
    if batch.ndim == 3:
        batch = batch[..., np.newaxis]
    if np.issubdtype(batch.dtype, np.floating):
        return batch.astype(np.float32, copy=False)
    return pixels_uint8(batch)


def _tensor(images: Images) -> np.ndarray:
    if isinstance(images, np.ndarray):  # a whole batch as it is, without splitting and stacking it again
        return _wire_tensor(images[np.newaxis] if _single_array(images) else images)
    arrays = []
    for item in _split(images):
        if not isinstance(item, np.ndarray):
            raise TypeError(f"tensors=True sends arrays only, not {type(item).__name__}")
        arrays.extend(_arrays(item))
    if len({a.shape for a in arrays}) != 1:
        raise ValueError(f"tensor images in one request share one shape; got {sorted({a.shape for a in arrays})}")
    return _wire_tensor(np.stack(arrays))


def collect(images: Images, *, tensors: bool = False) -> Batch:
    """The request's images; files are read and PIL images and arrays encoded here, in the caller's thread."""
    if tensors:
        return Batch(tensor=_tensor(images))
    return Batch(encoded=[_encoded(item) for item in _split(images)])
