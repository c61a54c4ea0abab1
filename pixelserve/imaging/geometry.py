"""Resize modes (``resize_to``); Pillow's filters are antialiased when shrinking:
- ``stretch``: the whole image to height x width, aspect ratio not kept; bilinear. This is the resize the server
  did before these modes existed, kept bit for bit.
- ``center-crop``: scaled so the short side fits, the centre cut out (sub-pixel exact: one resample of the box).
- ``letterbox``: scaled so the long side fits, centred (an odd margin pixel goes below / right), the rest padded.
  The default fill is ``reflect``: the image mirrored about its edges, the edge pixel repeated (Keras' "reflect",
  numpy's "symmetric"). That is what the CIFAR-10 classifier saw in training (random translation with reflect
  fill), it adds no hard edge or colour the photo does not have, and it measured best of the four fills on
  4:3 photos (bench/realworld_bench.py); ``edge``, ``mean`` (the image's mean colour) and ``black`` exist to
  compare. Black bars were the worst: the classifier never saw a flat black border.
- center-crop and letterbox resample with Lanczos (MODE_RESAMPLE): bilinear's triangle filter blurs at these
  scales and cost about 2.5 points on CIFAR-10 photos against Lanczos.
An image already at the model's size is used as it is, whatever the mode.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
from PIL import Image

from pixelserve.imaging.decoding import check_choice

ResizeMode = Literal["stretch", "center-crop", "letterbox"]


PadMode = Literal["reflect", "edge", "mean", "black"]


RESIZE_MODES: tuple[str, ...] = get_args(ResizeMode)


PAD_MODES: tuple[str, ...] = get_args(PadMode)


# Resampling filters (all antialiased when shrinking). Stretch keeps the old bilinear, bit for bit; the new modes
# and digits use Lanczos, sharper at these scales (measured: module docstring, bench/realworld_bench.py).
MODE_RESAMPLE: dict[str, Image.Resampling] = {
    "stretch": Image.Resampling.BILINEAR,
    "center-crop": Image.Resampling.LANCZOS,
    "letterbox": Image.Resampling.LANCZOS,
}


def _hwc(image: Image.Image) -> np.ndarray:
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels[..., np.newaxis] if pixels.ndim == 2 else pixels


def scaled_size(width: int, height: int, scale: float) -> tuple[int, int]:
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize_to(
    image: Image.Image,
    height: int,
    width: int,
    mode: ResizeMode = "stretch",
    *,
    pad: PadMode = "reflect",
    resample: Image.Resampling | None = None,
) -> np.ndarray:
    """An 'L' or 'RGB' image -> uint8 (height, width, channels) by ``mode``.

    ``pad`` fills letterbox margins; ``resample`` overrides the mode's filter (MODE_RESAMPLE), for comparisons.
    An image already at the model's size is returned as it is, whatever the mode.
    """
    check_choice("resize mode", mode, RESIZE_MODES)
    check_choice("pad", pad, PAD_MODES)
    filter_ = MODE_RESAMPLE[mode] if resample is None else resample
    w, h = image.size
    if (w, h) == (width, height):
        return _hwc(image)
    if mode == "stretch":
        return _hwc(image.resize((width, height), filter_))
    if mode == "center-crop":
        # the side that fits is taken whole (exactly, no rounding below zero), the other centred
        if width * h >= height * w:
            crop_w, crop_h = float(w), min(float(h), height * w / width)
        else:
            crop_w, crop_h = min(float(w), width * h / height), float(h)
        left, top = (w - crop_w) / 2, (h - crop_h) / 2
        return _hwc(image.resize((width, height), filter_, box=(left, top, left + crop_w, top + crop_h)))
    inner = _hwc(image.resize(scaled_size(w, h, min(width / w, height / h)), filter_))
    return _pad_to(inner, height, width, pad)


def _pad_to(pixels: np.ndarray, height: int, width: int, pad: PadMode) -> np.ndarray:
    """Centre ``pixels`` in height x width; the odd pixel of a margin goes to the bottom / right."""
    top, left = (height - pixels.shape[0]) // 2, (width - pixels.shape[1]) // 2
    widths = ((top, height - pixels.shape[0] - top), (left, width - pixels.shape[1] - left), (0, 0))
    if pad == "reflect":
        return np.pad(pixels, widths, mode="symmetric")
    if pad == "edge":
        return np.pad(pixels, widths, mode="edge")
    out = np.zeros((height, width, pixels.shape[2]), dtype=np.uint8)
    if pad == "mean":
        out[:] = np.rint(pixels.reshape(-1, pixels.shape[2]).mean(axis=0)).astype(np.uint8)
    out[top : top + pixels.shape[0], left : left + pixels.shape[1]] = pixels
    return out
