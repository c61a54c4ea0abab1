"""pixelserve.imaging.geometry: the resize modes (stretch, center-crop, letterbox)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pixelserve import imaging

from .support import BIG, bands, encode


def test_stretch_is_the_whole_image_resized_bilinear() -> None:
    image = Image.fromarray(np.random.default_rng(3).integers(0, 256, size=(30, 50, 3), dtype=np.uint8))
    pixels = imaging.resize_to(image, 8, 8, "stretch")
    np.testing.assert_array_equal(pixels, np.asarray(image.resize((8, 8), Image.Resampling.BILINEAR)))


@pytest.mark.parametrize("vertical", [True, False])
def test_center_crop_keeps_the_centre_and_cuts_the_long_side(vertical: bool) -> None:
    size = (96, 32) if vertical else (32, 96)  # 3:1; the centre band is exactly the centred square
    pixels = imaging.resize_to(bands(*size, vertical=vertical), 16, 16, "center-crop").astype(int)
    assert pixels.shape == (16, 16, 3)
    inner = pixels[:, 1:-1] if vertical else pixels[1:-1]
    # only green, the middle band (Lanczos rings by a grey level or two next to an edge)
    assert (inner[..., 1] >= 252).all() and (inner[..., [0, 2]] <= 3).all()
    # symmetric: the outermost columns (rows) see as much of the red band as of the blue one
    edge_a, edge_b = (pixels[:, 0], pixels[:, -1]) if vertical else (pixels[0], pixels[-1])
    assert abs(edge_a[..., 0].mean() - edge_b[..., 2].mean()) <= 1


def test_center_crop_of_a_photo_is_the_centre_at_the_model_size() -> None:
    rng = np.random.default_rng(4)
    centre = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    framed = np.pad(centre, ((0, 0), (16, 16), (0, 0)), mode="constant", constant_values=255)
    np.testing.assert_array_equal(imaging.resize_to(Image.fromarray(framed), 32, 32, "center-crop"), centre)


@pytest.mark.parametrize("pad", imaging.PAD_MODES)
def test_letterbox_keeps_the_aspect_ratio_and_pads_as_documented(pad: imaging.PadMode) -> None:
    content = np.random.default_rng(5).integers(0, 256, size=(16, 32, 3), dtype=np.uint8)
    pixels = imaging.resize_to(Image.fromarray(content).resize((64, 32)), 16, 16, "letterbox", pad=pad)
    assert pixels.shape == (16, 16, 3)
    inner = pixels[4:12]  # 64x32 -> 16x8, centred: 4 rows of margin above and below
    margins = {"top": pixels[:4], "bottom": pixels[12:]}
    if pad == "black":
        assert all((m == 0).all() for m in margins.values())
    elif pad == "mean":
        mean = np.rint(inner.reshape(-1, 3).mean(axis=0))
        assert all((m == mean).all() for m in margins.values())
    elif pad == "edge":
        assert (margins["top"] == inner[0]).all() and (margins["bottom"] == inner[-1]).all()
    else:  # mirrored about the edge, the edge row repeated
        np.testing.assert_array_equal(margins["top"], inner[3::-1])
        np.testing.assert_array_equal(margins["bottom"], inner[:3:-1])


def test_letterbox_content_has_the_model_size_on_its_long_side_and_the_odd_pixel_goes_last() -> None:
    white = Image.new("L", (90, 30), 255)  # 3:1 -> 9x3 in a 9x9 frame: 3 rows above, 3 below
    pixels = imaging.resize_to(white, 9, 9, "letterbox", pad="black")[..., 0]
    assert (pixels[3:6] == 255).all() and (pixels[:3] == 0).all() and (pixels[6:] == 0).all()
    tall = imaging.resize_to(Image.new("L", (20, 80), 255), 8, 8, "letterbox", pad="black")[..., 0]
    assert (tall[:, 3:5] == 255).all() and (tall[:, :3] == 0).all() and (tall[:, 5:] == 0).all()
    odd = imaging.resize_to(Image.new("L", (30, 10), 255), 8, 8, "letterbox", pad="black")[..., 0]
    rows = np.flatnonzero(odd.any(axis=1))
    assert rows.tolist() == [2, 3, 4]  # 8x3 content: 2 rows of margin above, 3 below


@pytest.mark.parametrize("mode", imaging.RESIZE_MODES)
def test_an_image_at_the_model_size_is_returned_as_it_is(mode: imaging.ResizeMode) -> None:
    pixels = np.random.default_rng(6).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(imaging.resize_to(Image.fromarray(pixels), 32, 32, mode), pixels)


def test_unknown_modes_are_value_errors() -> None:
    with pytest.raises(ValueError, match="resize mode must be one of stretch, center-crop, letterbox"):
        imaging.resize_to(Image.new("L", (4, 4)), 2, 2, "squash")  # type: ignore[arg-type]
    data = encode(np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="normalize must be one of none, digit"):
        imaging.prepare(data, color_mode="grayscale", height=2, width=2, normalize="mnist", max_pixels=BIG)  # type: ignore[arg-type]
