"""Decoding: PNG, JPEG, BMP and GIF, recognised by their magic bytes (a client's extension or content type is not
trusted). The pixel limit is checked on the header's size, before any pixel is decoded, so a decompression bomb
costs nothing; Pillow's process-wide MAX_IMAGE_PIXELS is left alone and stays an upper bound. Animated GIFs give
their first frame. The EXIF orientation (tags 1-8, also read from XMP, as ``PIL.ImageOps.exif_transpose``) is
applied, so a phone photo stored sideways comes out upright; an unreadable EXIF block is ignored, not an error.

Conversion rules (``to_color_mode``), in this order:
1. 16-bit grayscale is scaled to 8 bits (value / 257, rounded), not clipped.
2. Transparency (RGBA, LA, PA, palette with transparency) is composited onto white, the usual page background.
3. Grayscale models get ITU-R 601-2 luma (L = 0.299 R + 0.587 G + 0.114 B, Pillow's 'L'); RGB models get
   grayscale replicated to three channels.
"""

from __future__ import annotations

import io
import re
from typing import Literal, get_args

import numpy as np
from PIL import Image, UnidentifiedImageError

ColorMode = Literal["grayscale", "rgb"]


COLOR_MODES: tuple[str, ...] = get_args(ColorMode)


MAGIC: dict[bytes, str] = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"BM": "BMP",
}


WHITE = (255, 255, 255)


# EXIF orientation -> the transpose that shows the image upright (PIL.ImageOps.exif_transpose's table)
ORIENTATION_TAG = 0x0112


UPRIGHT: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class ImageError(ValueError):
    """A client image that cannot be used; ``too_large`` marks a size limit (413) rather than a bad file (400)."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.too_large = too_large


# Pillow names an in-memory file by its address ("cannot identify image file <_io.BytesIO object at 0x7f..>"):
# noise to a client, and it makes identical requests give different messages.
_OBJECT_REPR = re.compile(r" ?<[\w.]+ object at 0x[0-9a-fA-F]+>")


def _pillow_reason(exc: BaseException) -> str:
    return _OBJECT_REPR.sub("", str(exc)).strip() or type(exc).__name__


def sniff_format(data: bytes, name: str = "image") -> str:
    """The file format from its first bytes, or ImageError naming what is accepted."""
    for magic, fmt in MAGIC.items():
        if data.startswith(magic):
            return fmt
    raise ImageError(f"{name} is in an unsupported image format (first bytes {data[:8]!r}); send PNG, JPEG, BMP or GIF")


def decode(data: bytes, *, max_pixels: int, name: str = "image", draft: int | None = None) -> Image.Image:
    """One encoded file -> its first frame, loaded and upright, in the file's own mode.

    ``name`` starts every error message ("image 3 is too large: ..."). ``draft``: a JPEG whose sides are both at
    least twice this may be decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling, several times faster), never
    below ``draft`` pixels on either side; the pixel limit is checked on the full size first.
    """
    expected = sniff_format(data, name)
    try:
        image = Image.open(io.BytesIO(data), formats=[expected])
    except Image.DecompressionBombError as exc:
        # Pillow's own process-wide guard (~179 M pixels) fired before the per-call limit could
        message = f"{name} is too large: over {max_pixels} pixels (max_image_pixels): {_pillow_reason(exc)}"
        raise ImageError(message, too_large=True) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{name} is not a valid {expected} file: {_pillow_reason(exc)}") from exc
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(
            f"{name} is too large: {width}x{height} = {width * height} pixels; the limit is {max_pixels} "
            "(max_image_pixels)",
            too_large=True,
        )
    try:
        if draft is not None and expected == "JPEG":
            image.draft(None, (draft, draft))
        image.seek(0)
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{name} is not a valid {expected} file: {_pillow_reason(exc)}") from exc
    return upright(image)


def orientation(image: Image.Image) -> int:
    """The EXIF orientation (1-8; 1 when absent, out of range or unreadable)."""
    try:
        value = image.getexif().get(ORIENTATION_TAG, 1)
    except Exception:  # metadata is best effort: a broken EXIF block must not lose the picture
        return 1
    return value if isinstance(value, int) and value in range(1, 9) else 1


def upright(image: Image.Image) -> Image.Image:
    """The image as a viewer shows it: its EXIF orientation applied (``ImageOps.exif_transpose`` semantics)."""
    method = UPRIGHT.get(orientation(image))
    return image if method is None else image.transpose(method)


def _flatten_alpha(image: Image.Image) -> Image.Image:
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*WHITE, 255))
        image = Image.alpha_composite(background, rgba).convert("RGB")
    return image


def to_color_mode(image: Image.Image, color_mode: ColorMode) -> Image.Image:
    """The conversion rules: 16-bit scaled to 8, alpha onto white, then 'L' (ITU-R 601-2 luma) or 'RGB'."""
    check_choice("color_mode", color_mode, COLOR_MODES)
    if image.mode.startswith("I;16") or image.mode == "I":
        wide = np.asarray(image, dtype=np.float64) / 257.0
        image = Image.fromarray(np.clip(np.rint(wide), 0, 255).astype(np.uint8), mode="L")
    image = _flatten_alpha(image)
    target = "L" if color_mode == "grayscale" else "RGB"
    return image if image.mode == target else image.convert(target)


def check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{what} must be one of {', '.join(choices)}; got {value!r}")
