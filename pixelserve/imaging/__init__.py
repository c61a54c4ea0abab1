"""Encoded client images -> the uint8 HWC array a model eats: decoding, orientation, colour, geometry, digits.

One implementation for the server and the training side, so numpy and Pillow only (no service imports).

Entry points:
- ``prepare(data, *, color_mode, height, width, resize="stretch", normalize="none", max_pixels, name="image")``:
  one encoded file -> uint8 (height, width, channels). What the server calls per image.
- ``prepare_image(image, *, color_mode, height, width, resize="stretch", normalize="none")``: the same for an
  already decoded Pillow image (training, tests).
- ``decode(data, *, max_pixels, name="image", draft=None)`` -> Pillow image, upright, in the file's own mode.
- ``to_color_mode(image, color_mode)`` -> Pillow 'L' or 'RGB' image (the conversion rules below).
- ``resize_to(image, height, width, mode="stretch", *, pad="reflect", resample=None)`` -> uint8 HWC array.
- ``normalize_digit(pixels, *, height=28, width=28)``: 2-D uint8 -> 2-D uint8, MNIST's own normalisation.
- ``is_digit_normalized(pixels, *, height=28, width=28)``: whether ``normalize_digit`` would return it unchanged.
- ``ImageError(ValueError)`` with ``too_large`` (the server maps it to 413 when true, else 400) and ``message``.

The pieces: `decoding` (formats, limits, EXIF orientation, colour), `geometry` (resize modes), `digits`
(MNIST-style normalisation) and `pipeline` (the calls above).
"""

from pixelserve.imaging.decoding import (
    COLOR_MODES,
    MAGIC,
    ORIENTATION_TAG,
    ColorMode,
    ImageError,
    decode,
    orientation,
    sniff_format,
    to_color_mode,
    upright,
)
from pixelserve.imaging.digits import DIGIT_BOX, DIGIT_FRAME, WORK_SIDE, is_digit_normalized, normalize_digit
from pixelserve.imaging.geometry import MODE_RESAMPLE, PAD_MODES, RESIZE_MODES, PadMode, ResizeMode, resize_to
from pixelserve.imaging.pipeline import NORMALIZE_MODES, NormalizeMode, draft_size, prepare, prepare_image

__all__ = [
    "COLOR_MODES",
    "DIGIT_BOX",
    "DIGIT_FRAME",
    "MAGIC",
    "MODE_RESAMPLE",
    "NORMALIZE_MODES",
    "ORIENTATION_TAG",
    "PAD_MODES",
    "RESIZE_MODES",
    "WORK_SIDE",
    "ColorMode",
    "ImageError",
    "NormalizeMode",
    "PadMode",
    "ResizeMode",
    "decode",
    "draft_size",
    "is_digit_normalized",
    "normalize_digit",
    "orientation",
    "prepare",
    "prepare_image",
    "resize_to",
    "sniff_format",
    "to_color_mode",
    "upright",
]
