"""Decoding and checking client inputs: formats, limits, colour and size conversion, raw tensors."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from pixelserve.modelspec import Preprocessing
from pixelserve.service.core.images import Limits, decode_image, encode_png, prepare
from pixelserve.service.core.types import ImageInputs
from pixelserve.service.errors import InvalidInput, PayloadTooLarge
from tests.service.models import encode_image

GRAY = Preprocessing(color_mode="grayscale", height=8, width=8)
RGB = Preprocessing(color_mode="rgb", height=8, width=8)
LIMITS = Limits(max_bytes=1 << 20, max_pixels=4096 * 4096, max_images=16)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int, idat: bytes) -> bytes:
    """A grayscale 8-bit PNG whose header claims width x height, with the given compressed pixel stream."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def gray_pixels(seed: int = 0, size: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(size, size), dtype=np.uint8)


@pytest.mark.parametrize("image_format", ["PNG", "BMP", "GIF"])
def test_lossless_formats_decode_to_the_exact_pixels(image_format: str) -> None:
    pixels = gray_pixels()
    batch = prepare(ImageInputs(encoded=[encode_image(pixels, image_format)]), GRAY, LIMITS)
    assert batch.shape == (1, 8, 8, 1) and batch.dtype == np.uint8
    np.testing.assert_array_equal(batch[0, ..., 0], pixels)


def test_jpeg_decodes_to_what_pillow_reads() -> None:
    data = encode_image(gray_pixels(), "JPEG")
    batch = prepare(ImageInputs(encoded=[data]), GRAY, LIMITS)
    np.testing.assert_array_equal(batch[0, ..., 0], np.asarray(Image.open(io.BytesIO(data)).convert("L")))


def test_unknown_format_is_rejected_naming_the_accepted_ones() -> None:
    buffer = io.BytesIO()
    Image.fromarray(gray_pixels()).save(buffer, format="TIFF")
    for data in (buffer.getvalue(), b"hello world", b""):
        with pytest.raises(InvalidInput, match="PNG, JPEG, BMP or GIF"):
            prepare(ImageInputs(encoded=[data]), GRAY, LIMITS)


def test_corrupt_png_is_invalid_input_not_a_crash() -> None:
    data = encode_image(gray_pixels(size=64))
    for broken in (data[: len(data) // 2], data[:40] + b"\x00" * 200):
        with pytest.raises(InvalidInput, match="not a valid PNG") as info:
            prepare(ImageInputs(encoded=[broken]), GRAY, LIMITS)
        assert not isinstance(info.value, PayloadTooLarge)
        assert "object at 0x" not in info.value.message  # Pillow's in-memory file address is not for clients


def test_request_over_the_byte_limit_is_payload_too_large() -> None:
    data = encode_image(gray_pixels())
    limits = Limits(max_bytes=len(data) * 2 - 1, max_pixels=LIMITS.max_pixels, max_images=16)
    prepare(ImageInputs(encoded=[data]), GRAY, limits)
    with pytest.raises(PayloadTooLarge, match="max_request_bytes"):
        prepare(ImageInputs(encoded=[data, data]), GRAY, limits)


def test_pixel_limit_is_checked_from_the_header_before_decoding() -> None:
    """The pixel stream is garbage: decoding it would be InvalidInput, so PayloadTooLarge proves no decode."""
    bomb = png_claiming(20000, 20000, zlib.compress(b"not really pixels"))
    with pytest.raises(PayloadTooLarge, match=r"400000000 pixels") as info:
        prepare(ImageInputs(encoded=[bomb]), GRAY, LIMITS)
    assert "max_image_pixels" in info.value.message
    small_bomb = png_claiming(5000, 4000, zlib.compress(b"not really pixels"))
    with pytest.raises(PayloadTooLarge, match=r"5000x4000 = 20000000 pixels; the limit is 16777216"):
        prepare(ImageInputs(encoded=[small_bomb]), GRAY, LIMITS)


def test_real_decompression_bomb_is_rejected() -> None:
    """6000x6000 zero pixels compress to a few tens of KB and would inflate to 36 MB."""
    side = 6000
    bomb = png_claiming(side, side, zlib.compress(b"\x00" * ((side + 1) * side), 9))
    assert len(bomb) < 100_000
    with pytest.raises(PayloadTooLarge, match="36000000 pixels"):
        prepare(ImageInputs(encoded=[bomb]), GRAY, LIMITS)
    with pytest.raises(PayloadTooLarge, match="max_image_pixels"):
        decode_image(bomb, GRAY, max_pixels=side * side - 1)


def test_too_many_images_is_payload_too_large_and_an_empty_batch_is_invalid() -> None:
    data = encode_image(gray_pixels())
    with pytest.raises(PayloadTooLarge, match=r"17 images.*max_batch_images"):
        prepare(ImageInputs(encoded=[data] * 17), GRAY, LIMITS)
    with pytest.raises(InvalidInput, match="empty batch"):
        prepare(ImageInputs(encoded=[]), GRAY, LIMITS)
    with pytest.raises(InvalidInput, match="empty batch"):
        prepare(ImageInputs(tensor=np.zeros((0, 8, 8, 1), dtype=np.uint8)), GRAY, LIMITS)


def test_colour_image_for_a_grayscale_model_becomes_itu_601_luma() -> None:
    rgb = np.random.default_rng(1).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    batch = prepare(ImageInputs(encoded=[encode_image(rgb)]), GRAY, LIMITS)
    luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    assert np.abs(batch[0, ..., 0].astype(np.float64) - luma).max() <= 1.0


def test_grayscale_image_for_an_rgb_model_is_replicated_to_three_channels() -> None:
    pixels = gray_pixels(2)
    batch = prepare(ImageInputs(encoded=[encode_image(pixels)]), RGB, LIMITS)
    assert batch.shape == (1, 8, 8, 3)
    for channel in range(3):
        np.testing.assert_array_equal(batch[0, ..., channel], pixels)


def test_transparent_pixels_are_composited_onto_white() -> None:
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)  # black, fully transparent ...
    rgba[:4, :, 3] = 255  # ... except the top half, which is opaque black
    batch = prepare(ImageInputs(encoded=[encode_image(rgba)]), GRAY, LIMITS)
    assert (batch[0, :4] == 0).all() and (batch[0, 4:] == 255).all()


def test_sixteen_bit_grayscale_is_scaled_not_clipped() -> None:
    wide = np.array([[0, 257 * 128, 65535, 257 * 200]] * 4, dtype=np.uint16).repeat(2, axis=1)
    buffer = io.BytesIO()
    Image.fromarray(wide).save(buffer, format="PNG")
    batch = prepare(ImageInputs(encoded=[buffer.getvalue()]), GRAY, LIMITS)
    np.testing.assert_array_equal(batch[0, 0, ::2, 0], [0, 128, 255, 200])


def test_animated_gif_uses_its_first_frame() -> None:
    frames = [Image.fromarray(np.full((8, 8), value, dtype=np.uint8)) for value in (40, 200)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    assert Image.open(io.BytesIO(buffer.getvalue())).n_frames == 2
    batch = prepare(ImageInputs(encoded=[buffer.getvalue()]), GRAY, LIMITS)
    assert (batch == 40).all()


def test_image_of_another_size_is_resized_whole_to_the_model_size() -> None:
    wide = np.zeros((20, 40), dtype=np.uint8)
    wide[:, 20:] = 255  # left half black, right half white
    batch = prepare(ImageInputs(encoded=[encode_image(wide)]), GRAY, LIMITS)
    assert batch.shape == (1, 8, 8, 1)
    assert (batch[0, :, :3] == 0).all() and (batch[0, :, 5:] == 255).all()


def test_uint8_tensors_pass_through_and_nhw_gets_a_channel_axis() -> None:
    nhwc = np.random.default_rng(3).integers(0, 256, size=(2, 8, 8, 1), dtype=np.uint8)
    np.testing.assert_array_equal(prepare(ImageInputs(tensor=nhwc), GRAY, LIMITS), nhwc)
    np.testing.assert_array_equal(prepare(ImageInputs(tensor=nhwc[..., 0]), GRAY, LIMITS), nhwc)


def test_float32_tensors_in_range_are_rounded_to_uint8() -> None:
    values = np.array([0.0, 0.4, 127.6, 255.0], dtype=np.float32).repeat(16).reshape(1, 8, 8)
    batch = prepare(ImageInputs(tensor=values), GRAY, LIMITS)
    assert batch.dtype == np.uint8
    np.testing.assert_array_equal(batch[0, :, :, 0].reshape(-1)[::16], [0, 0, 128, 255])


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        (np.zeros((1, 8, 8, 3), dtype=np.uint8), r"expected a tensor of shape \[N, 8, 8, 1\].*got \[1, 8, 8, 3\]"),
        (np.zeros((1, 28, 28), dtype=np.uint8), r"got \[1, 28, 28\]$"),
        (np.zeros((8, 8), dtype=np.uint8), r"got \[8, 8\]$"),
        (np.zeros((1, 8, 8, 1), dtype=np.float64), "expected dtype uint8.*got float64"),
        (np.zeros((1, 8, 8, 1), dtype=np.int32), r"expected dtype uint8.*got int32"),
        (np.full((1, 8, 8, 1), 256.0, dtype=np.float32), r"within \[0, 255\]"),
        (np.full((1, 8, 8, 1), np.nan, dtype=np.float32), "finite"),
    ],
)
def test_bad_tensors_are_invalid_input_saying_expected_and_got(tensor: np.ndarray, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        prepare(ImageInputs(tensor=tensor), GRAY, LIMITS)


def test_rgb_model_rejects_a_one_channel_tensor_with_its_own_shape() -> None:
    with pytest.raises(InvalidInput, match=r"\[N, 8, 8, 3\], got \[1, 8, 8\]"):
        prepare(ImageInputs(tensor=np.zeros((1, 8, 8), dtype=np.uint8)), RGB, LIMITS)


def test_images_and_a_tensor_together_are_invalid() -> None:
    inputs = ImageInputs(encoded=[encode_image(gray_pixels())], tensor=np.zeros((1, 8, 8, 1), dtype=np.uint8))
    with pytest.raises(InvalidInput, match="not both"):
        prepare(inputs, GRAY, LIMITS)


def test_encode_png_round_trips_a_float_image() -> None:
    image = np.random.default_rng(4).random((8, 8, 1)).astype(np.float32)
    decoded = np.asarray(Image.open(io.BytesIO(encode_png(image))))
    assert decoded.shape == (8, 8)
    np.testing.assert_array_equal(decoded, np.rint(image[..., 0] * 255).astype(np.uint8))
    rgb = np.asarray(Image.open(io.BytesIO(encode_png(np.full((4, 4, 3), 2.0, dtype=np.float32)))))
    assert rgb.shape == (4, 4, 3) and (rgb == 255).all()
