"""The one call per image: decode, colour, then digit normalisation or the resize mode."""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
from PIL import Image

from pixelserve.imaging.decoding import COLOR_MODES, ColorMode, check_choice, decode, to_color_mode
from pixelserve.imaging.digits import WORK_SIDE, normalize_digit
from pixelserve.imaging.geometry import RESIZE_MODES, ResizeMode, resize_to

NormalizeMode = Literal["none", "digit"]


NORMALIZE_MODES: tuple[str, ...] = get_args(NormalizeMode)


def prepare_image(
    image: Image.Image,
    *,
    color_mode: ColorMode,
    height: int,
    width: int,
    resize: ResizeMode = "stretch",
    normalize: NormalizeMode = "none",
) -> np.ndarray:
    """A decoded image -> uint8 (height, width, 1 | 3): colour rules, then digit normalisation or ``resize``."""
    check_choice("resize mode", resize, RESIZE_MODES)
    check_choice("normalize", normalize, NORMALIZE_MODES)
    check_choice("color_mode", color_mode, COLOR_MODES)
    if normalize == "digit":
        digit = normalize_digit(np.asarray(to_color_mode(image, "grayscale")), height=height, width=width)
        channels = 1 if color_mode == "grayscale" else 3
        return np.repeat(digit[..., np.newaxis], channels, axis=2)
    return resize_to(to_color_mode(image, color_mode), height, width, resize)


def draft_size(height: int, width: int, normalize: NormalizeMode) -> int:
    """The smallest side a JPEG may be decoded at without changing what ``prepare`` gives materially."""
    return WORK_SIDE if normalize == "digit" else 4 * max(height, width)


def prepare(
    data: bytes,
    *,
    color_mode: ColorMode,
    height: int,
    width: int,
    resize: ResizeMode = "stretch",
    normalize: NormalizeMode = "none",
    max_pixels: int,
    name: str = "image",
) -> np.ndarray:
    """One encoded image -> uint8 (height, width, 1 | 3), the model's input; ImageError for a bad or huge file.

    Large JPEGs are decoded at a reduced scale that still leaves four times the model's size (or WORK_SIDE for
    digits) before the antialiased resize: a 12-megapixel photo decodes several times faster.
    """
    image = decode(data, max_pixels=max_pixels, name=name, draft=draft_size(height, width, normalize))
    return prepare_image(image, color_mode=color_mode, height=height, width=width, resize=resize, normalize=normalize)
