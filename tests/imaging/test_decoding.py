"""pixelserve.imaging.decoding: formats, limits, EXIF orientation and colour conversion rules."""

from __future__ import annotations

import io
import pickle
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps

from pixelserve import imaging
from pixelserve.imaging import ImageError

from .support import BIG, decoded, encode, exif_bytes, png_claiming, with_exif

# ---------------------------------------------------------------------------------------------------- decoding

UPRIGHT = np.random.default_rng(7).integers(0, 256, size=(5, 8, 3), dtype=np.uint8)  # not square, not symmetric

# What a camera stores for an upright picture under each EXIF orientation (the EXIF specification, in numpy terms)
STORE = {
    1: lambda up: up,
    2: lambda up: up[:, ::-1],
    3: lambda up: up[::-1, ::-1],
    4: lambda up: up[::-1],
    5: lambda up: up.transpose(1, 0, 2),
    6: lambda up: np.rot90(up, 1),
    7: lambda up: up.transpose(1, 0, 2)[::-1, ::-1],
    8: lambda up: np.rot90(up, -1),
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_decodes_to_the_same_upright_pixels(orientation: int) -> None:
    data = encode(STORE[orientation](UPRIGHT), "PNG", exif=exif_bytes(orientation))
    pixels = decoded(data)
    np.testing.assert_array_equal(pixels, UPRIGHT)
    np.testing.assert_array_equal(pixels, np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data)))))


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_of_a_jpeg_photo_is_honoured(orientation: int) -> None:
    upright = np.zeros((24, 40, 3), dtype=np.uint8)
    upright[:8, :8] = 255  # a white corner block top left: wherever it is stored, it must come back there
    data = encode(STORE[orientation](upright), "JPEG", quality=95, exif=exif_bytes(orientation))
    pixels = decoded(data, "grayscale")
    assert pixels.shape == (24, 40)
    assert pixels[:8, :8].mean() > 200 and pixels[8:, 8:].mean() < 30


@pytest.mark.parametrize(
    "payload",
    [
        b"Exif\x00\x00garbage, not TIFF",
        b"Exif\x00\x00MM\x00\x2a" + struct.pack(">I", 0xFFFFFF),  # first IFD far beyond the block
        b"Exif\x00\x00II\x2a\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHII", 0x0112, 2, 4, 0xFFFF) + bytes(4),
        b"Exif\x00\x00II\x2a\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHIHH", 0x0112, 3, 1, 9, 0) + bytes(4),
    ],
    ids=["not-tiff", "bad-offset", "orientation-is-a-string", "orientation-9"],
)
@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_broken_exif_is_ignored_not_an_error(payload: bytes) -> None:
    pixels = np.random.default_rng(1).integers(0, 256, size=(16, 24, 3), dtype=np.uint8)
    plain = encode(pixels, "JPEG", quality=95)
    image = imaging.decode(with_exif(plain, payload), max_pixels=BIG)
    assert image.size == (24, 16)
    np.testing.assert_array_equal(np.asarray(image), np.asarray(Image.open(io.BytesIO(plain))))


def test_an_exif_reader_that_raises_leaves_the_image_as_stored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow versions differ in what a damaged block raises; whatever it is, the picture survives."""
    data = encode(STORE[6](UPRIGHT), "PNG", exif=exif_bytes(6))

    def broken(self: Image.Image) -> Image.Exif:
        raise SyntaxError("not a TIFF file")

    monkeypatch.setattr(Image.Image, "getexif", broken)
    np.testing.assert_array_equal(decoded(data), STORE[6](UPRIGHT))


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "GIF"])
def test_lossless_formats_decode_to_the_exact_pixels(fmt: str) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, size=(8, 8), dtype=np.uint8)
    np.testing.assert_array_equal(decoded(encode(pixels, fmt), "grayscale"), pixels)


def test_unknown_formats_are_refused_naming_the_accepted_ones() -> None:
    tiff = encode(np.zeros((4, 4), dtype=np.uint8), "TIFF")
    for data in (tiff, b"hello world", b""):
        with pytest.raises(ImageError, match="PNG, JPEG, BMP or GIF") as info:
            imaging.decode(data, max_pixels=BIG, name="image 2")
        assert not info.value.too_large and info.value.message.startswith("image 2 ")


def test_corrupt_files_are_image_errors_with_clear_messages() -> None:
    png = encode(np.random.default_rng(0).integers(0, 256, size=(64, 64), dtype=np.uint8))
    jpeg = encode(np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8), "JPEG")
    cases = [(png[: len(png) // 2], "PNG"), (png[:40] + bytes(200), "PNG"), (jpeg[: len(jpeg) // 2], "JPEG")]
    cases += [(b"BM" + bytes(10), "BMP"), (b"GIF89a" + bytes(3), "GIF")]
    for data, fmt in cases:
        with pytest.raises(ImageError, match=f"^image 0 is not a valid {fmt} file: .+") as info:
            imaging.prepare(data, color_mode="grayscale", height=8, width=8, max_pixels=BIG, name="image 0")
        assert not info.value.too_large
        assert "object at 0x" not in info.value.message  # Pillow's in-memory file address is not for clients


def test_pixel_limit_is_checked_from_the_header_before_decoding() -> None:
    """The pixel stream is garbage: decoding it would be 'not a valid PNG', so too_large proves no decode."""
    bomb = png_claiming(20000, 20000, zlib.compress(b"not really pixels"))
    with pytest.raises(ImageError, match=r"^image is too large: .*400000000 pixels") as info:
        imaging.decode(bomb, max_pixels=BIG)
    assert info.value.too_large and "max_image_pixels" in info.value.message
    small_bomb = png_claiming(5000, 4000, zlib.compress(b"not really pixels"))
    with pytest.raises(ImageError, match=r"5000x4000 = 20000000 pixels; the limit is 16777216"):
        imaging.decode(small_bomb, max_pixels=BIG)


def test_image_errors_survive_pickling_with_their_kind() -> None:
    for error in (ImageError("image 1 is too large: ...", too_large=True), ImageError("image 1 is not a valid PNG")):
        copy = pickle.loads(pickle.dumps(error))
        assert isinstance(copy, ValueError) and (copy.message, copy.too_large) == (error.message, error.too_large)


def test_real_decompression_bomb_is_refused() -> None:
    """6000x6000 zero pixels compress to a few tens of KB and would inflate to 36 MB."""
    side = 6000
    bomb = png_claiming(side, side, zlib.compress(b"\x00" * ((side + 1) * side), 9))
    assert len(bomb) < 100_000
    with pytest.raises(ImageError, match="36000000 pixels") as info:
        imaging.prepare(bomb, color_mode="grayscale", height=28, width=28, max_pixels=side * side - 1)
    assert info.value.too_large
    assert imaging.decode(bomb, max_pixels=side * side).size == (side, side)  # at the limit: allowed


def test_jpeg_draft_decodes_large_photos_smaller_but_checks_the_full_size() -> None:
    photo = encode(np.random.default_rng(2).integers(0, 256, size=(1024, 1536, 3), dtype=np.uint8), "JPEG")
    assert imaging.decode(photo, max_pixels=BIG).size == (1536, 1024)
    assert imaging.decode(photo, max_pixels=BIG, draft=128).size == (192, 128)  # 1/8, no side below 128
    assert imaging.decode(photo, max_pixels=BIG, draft=300).size == (768, 512)  # 1/2: 1/4 would be 256 high
    with pytest.raises(ImageError, match="1536x1024"):
        imaging.decode(photo, max_pixels=1536 * 1024 - 1, draft=128)


def test_colour_image_for_a_grayscale_model_becomes_itu_601_luma() -> None:
    rgb = np.random.default_rng(1).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    assert np.abs(decoded(encode(rgb), "grayscale").astype(np.float64) - luma).max() <= 1.0


def test_grayscale_image_for_an_rgb_model_is_replicated_to_three_channels() -> None:
    pixels = np.random.default_rng(2).integers(0, 256, size=(8, 8), dtype=np.uint8)
    np.testing.assert_array_equal(decoded(encode(pixels), "rgb"), np.repeat(pixels[..., None], 3, axis=2))


def test_transparent_pixels_are_composited_onto_white() -> None:
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)  # black, fully transparent ...
    rgba[:4, :, 3] = 255  # ... except the top half, which is opaque black
    pixels = decoded(encode(rgba), "grayscale")
    assert (pixels[:4] == 0).all() and (pixels[4:] == 255).all()


def test_sixteen_bit_grayscale_is_scaled_not_clipped() -> None:
    wide = np.array([[0, 257 * 128, 65535, 257 * 200]] * 4, dtype=np.uint16).repeat(2, axis=1)
    np.testing.assert_array_equal(decoded(encode(wide), "grayscale")[0, ::2], [0, 128, 255, 200])


def test_animated_gif_gives_its_first_frame() -> None:
    frames = [Image.fromarray(np.full((8, 8), value, dtype=np.uint8)) for value in (40, 200)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    assert Image.open(io.BytesIO(buffer.getvalue())).n_frames == 2
    assert (decoded(buffer.getvalue(), "grayscale") == 40).all()
