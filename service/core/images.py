"""Client inputs -> the model's uint8 NHWC batch, with every limit checked before the expensive step.

Encoded files (PNG, JPEG, BMP, GIF, recognised by their magic bytes) go through `pixelserve.imaging`, the one
implementation the server, batch scoring and the training side share: the pixel limit read from the header
before any pixel is decoded (a decompression bomb costs nothing), EXIF orientation honoured, the conversion
rules, then the preprocessing model.json declares (`resize`, `normalize`), which a request may override.
See pixelserve/imaging for the rules themselves. Limits: total request bytes, decoded pixels per image, images
per request.

Raw tensors (V2 / gRPC clients) are taken as already prepared: uint8, or float32 holding whole values in
[0, 255] (rounded); NHWC, or NHW for one-channel models; height, width and channels must match the model
exactly (no resizing of tensors: a client sending tensors is expected to know the model's shape).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from pixelserve import imaging
from pixelserve.modelspec import Preprocessing

from ..errors import InvalidInput, PayloadTooLarge
from ..settings import Settings
from .types import NORMALIZE_MODES, RESIZE_MODES, Applied, ImageInputs, NormalizeMode, ResizeMode

# Decoding work per image beyond its pixels, in pixel units: the digit search costs a 240x200 scan's worth
# (about 2 ms) however small the file, so a batch of small digit PNGs still moves off the event loop.
DIGIT_WORK = 240 * 200


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_pixels: int
    max_images: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(settings.max_request_bytes, settings.max_image_pixels, settings.max_batch_images)


def _service_error(error: imaging.ImageError) -> InvalidInput:
    return PayloadTooLarge(error.message) if error.too_large else InvalidInput(error.message)


def sniff_format(data: bytes) -> str:
    """The file format from its first bytes, or InvalidInput naming what is accepted."""
    try:
        return imaging.sniff_format(data)
    except imaging.ImageError as exc:
        raise _service_error(exc) from exc


def choices(resize: object = None, normalize: object = None) -> tuple[ResizeMode | None, NormalizeMode | None]:
    """A request's preprocessing overrides from any wire, checked once: None or "" keeps the model's own."""
    picked = []
    for what, value, allowed in (("resize", resize, RESIZE_MODES), ("normalize", normalize, NORMALIZE_MODES)):
        if value in (None, ""):
            picked.append(None)
        elif isinstance(value, str) and value in allowed:
            picked.append(value)
        else:
            raise InvalidInput(f"{what} must be one of {', '.join(allowed)}, got {value!r}")
    return picked[0], picked[1]  # type: ignore[return-value]


def applied(inputs: ImageInputs, pre: Preprocessing) -> Applied:
    """The preprocessing a request gets: its own choices where it made them, else what model.json declares."""
    normalize = inputs.normalize or pre.normalize
    return Applied(resize="none" if normalize == "digit" else inputs.resize or pre.resize, normalize=normalize)


def decode_image(
    data: bytes, pre: Preprocessing, *, max_pixels: int, index: int = 0, mode: Applied | None = None
) -> np.ndarray:
    """One encoded image -> uint8 HWC at the model's size and colour mode, preprocessed as declared."""
    mode = mode or Applied(pre.resize, pre.normalize)
    resize = "stretch" if mode.resize == "none" else mode.resize  # "none": digit normalisation fits the box
    try:
        return imaging.prepare(
            data, color_mode=pre.color_mode, height=pre.height, width=pre.width, resize=resize,
            normalize=mode.normalize, max_pixels=max_pixels, name=f"image {index}",
        )  # fmt: skip
    except imaging.ImageError as exc:
        raise _service_error(exc) from exc


def decode_work(inputs: ImageInputs, pre: Preprocessing) -> int:
    """How much decoding a request asks for, in pixels, read from the headers alone (no pixel is decoded):
    the basis of the one rule for moving work off the event loop. A header that cannot be read counts as
    large, so its error is found off the loop too."""
    if inputs.tensor is not None:
        return 0
    extra = DIGIT_WORK if (inputs.normalize or pre.normalize) == "digit" else 0
    work = 0
    for data in inputs.encoded:
        try:
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
        except Exception:  # unreadable: the decode reports it in its own words
            width, height = 1024, 1024
        work += width * height + extra
    return work


def check_count(count: int, limits: Limits) -> None:
    if count == 0:
        raise InvalidInput("empty batch: send at least one image")
    if count > limits.max_images:
        raise PayloadTooLarge(f"{count} images in one request; the limit is {limits.max_images} (max_batch_images)")


def _check_bytes(total: int, limits: Limits) -> None:
    if total > limits.max_bytes:
        raise PayloadTooLarge(f"{total} bytes of input; the limit is {limits.max_bytes} (max_request_bytes)")


def decode_images(encoded: Sequence[bytes], pre: Preprocessing, limits: Limits, mode: Applied) -> np.ndarray:
    check_count(len(encoded), limits)
    _check_bytes(sum(len(data) for data in encoded), limits)
    return np.stack(
        [decode_image(data, pre, max_pixels=limits.max_pixels, index=i, mode=mode) for i, data in enumerate(encoded)]
    )


def tensor_to_batch(tensor: np.ndarray, pre: Preprocessing, limits: Limits) -> np.ndarray:
    """A client tensor checked against the model: NHWC (or NHW for one channel), uint8 or float32 0..255."""
    got = list(tensor.shape)
    expected = (pre.height, pre.width, pre.channels)
    accepted = f"[N, {pre.height}, {pre.width}, {pre.channels}]"
    if pre.channels == 1:
        accepted += f" or [N, {pre.height}, {pre.width}]"
        if tensor.ndim == 3:
            tensor = tensor[..., np.newaxis]
    if tensor.ndim != 4 or tuple(tensor.shape[1:]) != expected:
        raise InvalidInput(f"expected a tensor of shape {accepted}, got {got}")
    check_count(int(tensor.shape[0]), limits)
    _check_bytes(tensor.nbytes, limits)
    if tensor.dtype == np.uint8:
        return np.ascontiguousarray(tensor)
    if tensor.dtype != np.float32:
        raise InvalidInput(f"expected dtype uint8 (or float32 in [0, 255]), got {tensor.dtype}")
    if not np.isfinite(tensor).all() or tensor.min() < 0 or tensor.max() > 255:
        raise InvalidInput("float32 pixel values must be finite and within [0, 255]")
    return np.rint(tensor).astype(np.uint8)


def prepare(inputs: ImageInputs, pre: Preprocessing, limits: Limits) -> np.ndarray:
    """The batch a model version eats: uint8 [N, H, W, C]."""
    if inputs.tensor is not None:
        if len(inputs.encoded):
            raise InvalidInput("send either encoded images or a tensor, not both")
        return tensor_to_batch(inputs.tensor, pre, limits)
    return decode_images(inputs.encoded, pre, limits, applied(inputs, pre))


def encode_png(image: np.ndarray) -> bytes:
    """A HWC image -> PNG bytes, grayscale when it has one channel: float in 0..1 (a reconstruction) or the
    uint8 pixels a model was given."""
    pixels = image if image.dtype == np.uint8 else np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
