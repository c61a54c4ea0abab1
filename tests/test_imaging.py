"""pixelserve.imaging: decoding (formats, limits, EXIF orientation), conversion rules, resize modes, digits."""

from __future__ import annotations

import io
import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from pixelserve import imaging
from pixelserve.imaging import ImageError
from tests.prerequisites import require

SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
BIG = 4096 * 4096


def encode(pixels: np.ndarray | Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(np.ascontiguousarray(pixels))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def decoded(data: bytes, color_mode: imaging.ColorMode = "rgb") -> np.ndarray:
    return np.asarray(imaging.to_color_mode(imaging.decode(data, max_pixels=BIG), color_mode))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int, idat: bytes) -> bytes:
    """A grayscale 8-bit PNG whose header claims width x height, with the given compressed pixel stream."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def with_exif(jpeg: bytes, payload: bytes) -> bytes:
    """A JPEG with an APP1 segment holding ``payload`` right after its start-of-image marker."""
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


@pytest.fixture(scope="module")
def mnist() -> tuple[np.ndarray, np.ndarray]:
    data_dir = Path(os.environ.get("PIXELSERVE_DATA_DIR", SHARED_DATASETS))
    require((data_dir / "mnist.npz").exists(), f"real datasets not found in {data_dir}")
    with np.load(data_dir / "mnist.npz") as data:
        return data["x_test"], data["y_test"]


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


def exif_bytes(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[imaging.ORIENTATION_TAG] = orientation
    return exif.tobytes()


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


# ---------------------------------------------------------------------------------------------------- resizing


def bands(width: int, height: int, vertical: bool = True) -> Image.Image:
    """Three equal bands red | green | blue (left to right, or top to bottom)."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    n = width if vertical else height
    for channel in range(3):
        part = slice(channel * n // 3, (channel + 1) * n // 3)
        if vertical:
            pixels[:, part, channel] = 255
        else:
            pixels[part, :, channel] = 255
    return Image.fromarray(pixels)


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


# ---------------------------------------------------------------------------------------------------- digits


def mass_centre(frame: np.ndarray) -> tuple[float, float]:
    ys, xs = np.mgrid[0 : frame.shape[0], 0 : frame.shape[1]]
    total = frame.sum(dtype=np.float64)
    return float((frame * ys).sum() / total), float((frame * xs).sum() / total)


def ink_box(frame: np.ndarray) -> tuple[int, int]:
    rows, cols = np.flatnonzero(frame.any(axis=1)), np.flatnonzero(frame.any(axis=0))
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference in grey levels, at the best of the whole-pixel shifts by up to one pixel: centring by
    mass rounds to whole pixels, and a resampled digit's centre can round the other way (a one-pixel shift of an
    MNIST digit alone costs about 16)."""
    shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    return min(float(np.abs(np.roll(a.astype(int), s, axis=(0, 1)) - b).mean()) for s in shifts)


def on_paper(digit: np.ndarray, side: int, top: int, left: int, canvas: tuple[int, int] = (200, 240)) -> np.ndarray:
    """The digit inverted (dark ink on white) and scaled to side x side at (top, left) of a white canvas."""
    paper = np.full(canvas, 255, dtype=np.uint8)
    paper[top : top + side, left : left + side] = 255 - np.asarray(Image.fromarray(digit).resize((side, side)))
    return paper


def test_real_mnist_test_images_come_back_unchanged_bit_for_bit(mnist: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = mnist
    changed = [i for i, digit in enumerate(x) if not np.array_equal(imaging.normalize_digit(digit), digit)]
    assert changed == []
    assert all(imaging.is_digit_normalized(digit) for digit in x[:500])


def test_an_mnist_digit_off_centre_is_recentred_by_whole_pixels(mnist: tuple[np.ndarray, np.ndarray]) -> None:
    digit = mnist[0][0]
    moved = np.roll(digit, (-3, 2), axis=(0, 1))  # MNIST's first test digit (rows 7-26, columns 6-21) has room
    assert not imaging.is_digit_normalized(moved)
    out = imaging.normalize_digit(moved)
    assert imaging.is_digit_normalized(out)
    np.testing.assert_array_equal(out, digit)  # the ink fits the box already: moved back, not resampled


def test_a_scaled_digit_on_paper_normalises_to_nearly_the_original(mnist: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = mnist
    rng = np.random.default_rng(0)
    distances = []
    for digit in x[:60]:
        side = int(rng.integers(80, 200))
        paper = on_paper(digit, side, int(rng.integers(0, 200 - side + 1)), int(rng.integers(0, 240 - side + 1)))
        out = imaging.normalize_digit(paper)
        cy, cx = mass_centre(out)
        assert abs(cy - 14) <= 0.5 + 1e-6 and abs(cx - 14) <= 0.5 + 1e-6
        assert max(ink_box(out)) in (19, 20) and max(ink_box(out)) <= 20
        distances.append(distance(out, digit))
    assert np.mean(distances) < 7 and np.max(distances) < 16


def test_normalising_its_own_output_changes_nothing(mnist: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = mnist
    rng = np.random.default_rng(1)
    for digit in x[100:160]:
        side = int(rng.integers(40, 200))
        out = imaging.normalize_digit(on_paper(digit, side, 0, int(rng.integers(0, 240 - side + 1))))
        assert imaging.is_digit_normalized(out)
        np.testing.assert_array_equal(imaging.normalize_digit(out), out)


def grey_paper(darkness: np.ndarray, rng: np.random.Generator, specks: float) -> bytes:
    """Ink on paper at 185 with a +-25 gradient, Gaussian noise 6, dark specks; JPEG quality 70."""
    h, w = darkness.shape
    ys, xs = np.mgrid[0:h, 0:w]
    level = 185 + 25 * (xs / w - 0.5) + 25 * (ys / h - 0.5) - 140 * darkness + rng.normal(0, 6, darkness.shape)
    dust = rng.random(darkness.shape) < specks
    level[dust] -= rng.uniform(60, 120, int(dust.sum()))
    return encode(np.clip(np.rint(level), 0, 255).astype(np.uint8), "JPEG", quality=70)


def test_noisy_grey_paper_jpeg_keeps_a_tight_bounding_box(mnist: tuple[np.ndarray, np.ndarray]) -> None:
    """Against the same digit on clean white paper: the same ink box, nearly the same pixels."""
    x, _ = mnist
    rng = np.random.default_rng(2)
    for digit in x[200:230]:
        side, top, left = 120, int(rng.integers(0, 81)), int(rng.integers(0, 121))
        clean = imaging.normalize_digit(on_paper(digit, side, top, left))
        darkness = (255 - on_paper(digit, side, top, left)) / 255.0
        noisy = imaging.normalize_digit(decoded(grey_paper(darkness, rng, specks=0.003), "grayscale"))
        assert np.abs(np.subtract(ink_box(noisy), ink_box(clean))).max() <= 1
        assert max(ink_box(noisy)) >= 19  # had specks or the gradient widened the crop, the digit would shrink
        assert distance(noisy, clean) < 14


def test_an_illumination_gradient_stronger_than_faint_ink_is_removed(mnist: tuple[np.ndarray, np.ndarray]) -> None:
    """Paper from 230 (left) to 150 (right), ink only 90 darker: the right-hand paper is darker than the ink's
    threshold above a flat background level, so only a fitted background keeps the box on the digit."""
    digit = mnist[0][11]
    darkness = (255 - on_paper(digit, 110, 45, 65)) / 255.0
    paper = 230 - 80 * np.arange(240)[None, :] / 239 - 90 * darkness + np.random.default_rng(3).normal(0, 3, (200, 240))
    shaded = imaging.normalize_digit(np.clip(np.rint(paper), 0, 255).astype(np.uint8))
    clean = imaging.normalize_digit(on_paper(digit, 110, 45, 65))
    assert np.abs(np.subtract(ink_box(shaded), ink_box(clean))).max() <= 1
    assert distance(shaded, clean) < 14


def test_specks_far_from_the_digit_do_not_move_or_shrink_it(mnist: tuple[np.ndarray, np.ndarray]) -> None:
    paper = on_paper(mnist[0][3], 100, 50, 70)
    dusty = paper.copy()
    for y, x in [(2, 3), (190, 230), (5, 220), (180, 10), (100, 5)]:
        dusty[y : y + 2, x : x + 2] = 30  # 2x2 dark specks in every corner and at the edge
    np.testing.assert_array_equal(imaging.normalize_digit(dusty), imaging.normalize_digit(paper))


def test_light_ink_on_a_dark_background_is_not_inverted(mnist: tuple[np.ndarray, np.ndarray]) -> None:
    digit = mnist[0][5]
    board = np.full((120, 150), 40, dtype=np.uint8)  # chalk on a blackboard: the background is already dark
    board[10:110, 25:125] = np.maximum(40, np.asarray(Image.fromarray(digit).resize((100, 100))))
    out = imaging.normalize_digit(board)
    assert np.abs(out.astype(int) - digit).mean() < 12


@pytest.mark.parametrize(
    ("name", "pixels"),
    [
        ("blank black", np.zeros((200, 240), dtype=np.uint8)),
        ("blank white", np.full((200, 240), 255, dtype=np.uint8)),
        ("blank grey", np.full((50, 50), 128, dtype=np.uint8)),
        ("one pixel", np.zeros((1, 1), dtype=np.uint8)),
        ("one white pixel", np.full((1, 1), 255, dtype=np.uint8)),
        ("noise only", np.random.default_rng(0).normal(200, 5, (100, 100)).clip(0, 255).astype(np.uint8)),
    ],
)
def test_blank_images_give_a_blank_frame(name: str, pixels: np.ndarray) -> None:
    out = imaging.normalize_digit(pixels)
    assert out.shape == (28, 28) and out.dtype == np.uint8
    assert (out == 0).all(), name


def line(shape: tuple[int, int], ink: slice) -> np.ndarray:
    """White with a black run along the long axis."""
    pixels = np.full(shape, 255, dtype=np.uint8)
    if shape[0] < shape[1]:
        pixels[:, ink] = 0
    else:
        pixels[ink, :] = 0
    return pixels


@pytest.mark.parametrize(
    "pixels",
    [
        line((1, 9), slice(3, 6)),
        line((1, 5000), slice(1000, 4000)),
        line((5000, 1), slice(10, 20)),
        line((3, 4000), slice(0, 4000)),
        line((2, 3), slice(1, 2)),
        np.eye(7, dtype=np.uint8) * 255,
        np.random.default_rng(1).integers(0, 256, size=(3, 3), dtype=np.uint8),
    ],
    ids=["1x9", "1x5000", "5000x1", "3x4000-all-ink", "2x3", "7x7-diagonal", "3x3-random"],
)
def test_tiny_and_extreme_images_never_crash_and_stay_in_the_frame(pixels: np.ndarray) -> None:
    out = imaging.normalize_digit(pixels)
    assert out.shape == (28, 28) and out.dtype == np.uint8
    assert imaging.is_digit_normalized(out)
    if out.any():
        assert max(ink_box(out)) <= 20


def random_image(kind: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Noise, a flat field, a dark rectangle on white, salt and pepper, or Gaussian noise; uint8 h x w."""
    if kind == 0:
        return rng.integers(0, 256, (h, w), dtype=np.uint8)
    if kind == 1:
        return np.full((h, w), rng.integers(0, 256), dtype=np.uint8)
    if kind == 2:
        pixels = np.full((h, w), 255, dtype=np.uint8)
        pixels[h // 4 : h // 4 + h // 2 + 1, w // 5 : w // 5 + w // 3 + 1] = rng.integers(0, 200)
        return pixels
    if kind == 3:
        return ((rng.random((h, w)) < rng.random()) * 255).astype(np.uint8)
    return rng.normal(128, 60, (h, w)).clip(0, 255).astype(np.uint8)


def test_random_images_of_random_sizes_give_a_fixed_point() -> None:
    """1-120 pixels a side, every kind of content: a frame that normalises to itself, never an exception."""
    rng = np.random.default_rng(0)
    for i in range(100):
        pixels = random_image(i % 5, int(rng.integers(1, 121)), int(rng.integers(1, 121)), rng)
        out = imaging.normalize_digit(pixels)
        assert out.shape == (28, 28) and imaging.is_digit_normalized(out)
        np.testing.assert_array_equal(imaging.normalize_digit(out), out)


def test_a_thin_line_becomes_a_bar_across_the_box() -> None:
    out = imaging.normalize_digit(line((1, 5000), slice(1000, 4000)))
    assert ink_box(out) == (1, 20) and out.max() == 255


def test_other_frame_sizes_scale_the_box(mnist: tuple[np.ndarray, np.ndarray]) -> None:
    out = imaging.normalize_digit(on_paper(mnist[0][7], 150, 20, 40), height=56, width=56)
    assert out.shape == (56, 56) and max(ink_box(out)) == 40


def test_non_grey_input_is_a_value_error() -> None:
    for bad in (np.zeros((4, 4, 3), dtype=np.uint8), np.zeros((4, 4), dtype=np.float32), np.zeros((0, 4), np.uint8)):
        with pytest.raises(ValueError, match="2-D uint8 grey image"):
            imaging.normalize_digit(bad)


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
