"""Client inputs -> the model's uint8 NHWC batch, with every limit checked before the expensive step.

Accepted files: PNG, JPEG, BMP, GIF, recognised by their magic bytes (the extension or content type a client
sends is not trusted). Limits: total request bytes, decoded pixels per image (read from the header, before any
pixel is decoded, so a decompression bomb costs nothing), and images per request. The pixel limit is checked per
call; Pillow's process-wide MAX_IMAGE_PIXELS is left alone, so its guard (about 179 M pixels) stays an upper bound.

Conversion rules, applied in this order:
1. Animated GIFs: the first frame only.
2. Transparency (RGBA, LA, palette with transparency) is composited onto white, the usual page background.
3. 16-bit grayscale is scaled to 8 bits (value / 257), not clipped.
4. Colour: grayscale models get ITU-R 601-2 luma (L = 0.299 R + 0.587 G + 0.114 B, Pillow's 'L');
   RGB models get grayscale replicated to three channels.
5. Size: an image of another size is resized as a whole to the model's height x width with Pillow's bilinear
   filter (antialiased when shrinking). No cropping and no aspect-ratio padding: a non-square image is
   stretched, as the training data (already square) never needed either.

Raw tensors (V2 / gRPC clients) skip decoding: uint8, or float32 holding whole values in [0, 255] (rounded);
NHWC, or NHW for one-channel models; height, width and channels must match the model exactly (no resizing of
tensors: a client sending tensors is expected to know the model's shape).
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from pixelserve.modelspec import Preprocessing
from pixelserve.service.errors import InvalidInput, PayloadTooLarge
from pixelserve.service.settings import Settings
from pixelserve.service.types import ImageInputs

MAGIC: dict[bytes, str] = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"BM": "BMP",
}
WHITE = (255, 255, 255)


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_pixels: int
    max_images: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(settings.max_request_bytes, settings.max_image_pixels, settings.max_batch_images)


# Pillow names an in-memory file by its address ("cannot identify image file <_io.BytesIO object at 0x7f..>"):
# noise to a client, and it makes identical requests give different messages.
_OBJECT_REPR = re.compile(r" ?<[\w.]+ object at 0x[0-9a-fA-F]+>")


def _pillow_reason(exc: BaseException) -> str:
    return _OBJECT_REPR.sub("", str(exc)).strip() or type(exc).__name__


def sniff_format(data: bytes) -> str:
    """The file format from its first bytes, or InvalidInput naming what is accepted."""
    for magic, name in MAGIC.items():
        if data.startswith(magic):
            return name
    raise InvalidInput(f"unsupported image format (first bytes {data[:8]!r}); send PNG, JPEG, BMP or GIF")


def _flatten_alpha(image: Image.Image) -> Image.Image:
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*WHITE, 255))
        image = Image.alpha_composite(background, rgba).convert("RGB")
    return image


def _to_color_mode(image: Image.Image, color_mode: str) -> Image.Image:
    if image.mode.startswith("I;16") or image.mode == "I":
        wide = np.asarray(image, dtype=np.float64) / 257.0
        image = Image.fromarray(np.clip(np.rint(wide), 0, 255).astype(np.uint8), mode="L")
    image = _flatten_alpha(image)
    return image.convert("L" if color_mode == "grayscale" else "RGB")


def decode_image(data: bytes, pre: Preprocessing, *, max_pixels: int, index: int = 0) -> np.ndarray:
    """One encoded image -> uint8 HWC at the model's size and colour mode."""
    expected = sniff_format(data)
    try:
        image = Image.open(io.BytesIO(data), formats=[expected])
        width, height = image.size
        if width * height > max_pixels:
            raise PayloadTooLarge(
                f"image {index} is too large: {width}x{height} = {width * height} pixels; the limit is {max_pixels} "
                "(max_image_pixels)"
            )
        image.seek(0)
        image.load()
        image = _to_color_mode(image, pre.color_mode)
        if image.size != (pre.width, pre.height):
            image = image.resize((pre.width, pre.height), Image.Resampling.BILINEAR)
    except Image.DecompressionBombError as exc:
        # Pillow's own process-wide guard (~179 M pixels) fired before our per-call limit could
        message = f"image {index} is too large: over {max_pixels} pixels (max_image_pixels): {exc}"
        raise PayloadTooLarge(message) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidInput(f"image {index} is not a valid {expected} file: {_pillow_reason(exc)}") from exc
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels[..., np.newaxis] if pixels.ndim == 2 else pixels


def _check_count(count: int, limits: Limits) -> None:
    if count == 0:
        raise InvalidInput("empty batch: send at least one image")
    if count > limits.max_images:
        raise PayloadTooLarge(f"{count} images in one request; the limit is {limits.max_images} (max_batch_images)")


def _check_bytes(total: int, limits: Limits) -> None:
    if total > limits.max_bytes:
        raise PayloadTooLarge(f"{total} bytes of input; the limit is {limits.max_bytes} (max_request_bytes)")


def decode_images(encoded: Sequence[bytes], pre: Preprocessing, limits: Limits) -> np.ndarray:
    _check_count(len(encoded), limits)
    _check_bytes(sum(len(data) for data in encoded), limits)
    return np.stack([decode_image(data, pre, max_pixels=limits.max_pixels, index=i) for i, data in enumerate(encoded)])


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
    _check_count(int(tensor.shape[0]), limits)
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
    return decode_images(inputs.encoded, pre, limits)


def encode_png(image: np.ndarray) -> bytes:
    """A float HWC image in 0..1 (a reconstruction) -> PNG bytes, grayscale when it has one channel."""
    pixels = np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
