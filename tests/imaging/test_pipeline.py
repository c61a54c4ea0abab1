"""pixelserve.imaging.pipeline: prepare() from bytes to the model's input, EXIF and resize included."""

from __future__ import annotations

import numpy as np
from PIL import Image

from pixelserve import imaging

from .support import BIG, bands, distance, encode, exif_bytes, on_paper

# ---------------------------------------------------------------------------------------------------- prepare


def test_prepare_digit_for_an_mnist_model(mnist: tuple[np.ndarray, np.ndarray]) -> None:
    digit = mnist[0][9]
    data = encode(np.repeat(on_paper(digit, 150, 25, 45)[..., None], 3, axis=2), "JPEG", quality=90)
    pixels = imaging.prepare(data, color_mode="grayscale", height=28, width=28, normalize="digit", max_pixels=BIG)
    assert pixels.shape == (28, 28, 1) and pixels.dtype == np.uint8
    assert np.abs(pixels[..., 0].astype(int) - digit).mean() < 12
    rgb = imaging.prepare(data, color_mode="rgb", height=28, width=28, normalize="digit", max_pixels=BIG)
    assert rgb.shape == (28, 28, 3) and (rgb == pixels).all()


def test_a_big_phone_photo_of_a_digit_normalises_like_a_small_scan(mnist: tuple[np.ndarray, np.ndarray]) -> None:
    """2600x2000 JPEG: decoded at reduced scale, reduced to WORK_SIDE, and still the same digit."""
    digit = mnist[0][13]
    photo = np.full((2000, 2600), 210, dtype=np.uint8)
    photo[300:1700, 600:2000] = 255 - 45 - np.asarray(Image.fromarray(digit).resize((1400, 1400))) * (150 / 255)
    data = encode(photo, "JPEG", quality=85)
    assert imaging.decode(data, max_pixels=BIG, draft=imaging.WORK_SIDE).size == (1300, 1000)
    big = imaging.prepare(data, color_mode="grayscale", height=28, width=28, normalize="digit", max_pixels=BIG)
    small = imaging.normalize_digit(on_paper(digit, 140, 30, 60))
    assert distance(big[..., 0], small) < 10 and distance(big[..., 0], digit) < 14


def test_prepare_applies_exif_then_the_resize_mode() -> None:
    upright = np.array(bands(96, 32))  # red | green | blue, stored rotated with orientation 6
    data = encode(np.rot90(upright, 1), "PNG", exif=exif_bytes(6))
    pixels = imaging.prepare(data, color_mode="rgb", height=16, width=16, resize="center-crop", max_pixels=BIG)
    assert (pixels[:, 1:-1, 1] >= 252).all() and (pixels[:, 1:-1, [0, 2]] <= 3).all()
    stretched = imaging.prepare(data, color_mode="rgb", height=16, width=16, max_pixels=BIG)
    assert stretched[:, 0, 0].min() == 255 and stretched[:, -1, 2].min() == 255  # left red, right blue: upright
