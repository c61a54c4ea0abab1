"""Real-world variants: deterministic for a seed, decodable files of the promised kind, labels that match."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from pixelserve.training import variants
from tests.prerequisites import require


@pytest.fixture(scope="module")
def mnist(shared_datasets: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(shared_datasets / "mnist.npz") as data:
        return data["x_test"], data["y_test"]


@pytest.fixture(scope="module")
def photos() -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-shaped test arrays: smooth, asymmetric pictures (the generators only need arrays; decoding the real
    CIFAR-10 JPEG archive would cost the test 10-20 s)."""
    rng = np.random.default_rng(11)
    ys, xs = np.mgrid[0:32, 0:32]
    picture = np.stack([ys * 8, xs * 8, 255 - (ys + xs) * 4], axis=-1)  # no two corners alike
    x = np.stack([picture + rng.integers(0, 9, (32, 32, 3)) for _ in range(30)])
    return x.clip(0, 255).astype(np.uint8), np.arange(30) % 10


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


MNIST_GENERATORS = [variants.mnist_paper, variants.mnist_grey_paper_jpeg]
PHOTO_GENERATORS = [variants.cifar_exif_rotated, variants.cifar_photo_4x3]


@pytest.mark.parametrize("generate", MNIST_GENERATORS, ids=lambda g: g.__name__)
def test_mnist_variants_are_deterministic_for_a_seed(generate: variants.Generator, mnist: tuple) -> None:
    x, y = mnist
    first, again, other = generate(x, y, 8, 3), generate(x, y, 8, 3), generate(x, y, 8, 4)
    assert first.images == again.images and (first.labels == again.labels).all()
    assert first.images != other.images


@pytest.mark.parametrize("generate", PHOTO_GENERATORS, ids=lambda g: g.__name__)
def test_photo_variants_are_deterministic_for_a_seed(generate: variants.Generator, photos: tuple) -> None:
    x, y = photos
    first, again, other = generate(x, y, 8, 3), generate(x, y, 8, 3), generate(x, y, 8, 4)
    assert first.images == again.images and (first.labels == again.labels).all()
    assert first.images != other.images


def test_rows_are_distinct_test_images_and_labels_follow_them(mnist: tuple) -> None:
    x, y = mnist
    variant = variants.mnist_paper(x, y, 50, 0)
    assert len(variant) == 50 and len(set(variant.indices.tolist())) == 50
    np.testing.assert_array_equal(variant.labels, y[variant.indices])
    assert len(variants.plain("few", x[:5], y[:5], 50, 0)) == 5  # asking for more than there are: all of them
    png, jpeg = variants.plain("png", x, y, 3, 0), variants.plain("jpeg", x, y, 3, 0, jpeg_quality=75)
    for lossless, lossy, row in zip(png.images, jpeg.images, png.indices, strict=True):
        np.testing.assert_array_equal(np.asarray(opened(lossless)), x[row])
        assert opened(lossy).format == "JPEG"
        assert 0 < np.abs(np.asarray(opened(lossy)).astype(int) - x[row]).mean() < 8


def test_paper_is_dark_ink_on_a_white_canvas_of_about_240x200(mnist: tuple) -> None:
    x, y = mnist
    variant = variants.mnist_paper(x, y, 20, 1)
    sizes, sides = set(), []
    for data, row in zip(variant.images, variant.indices, strict=True):
        image = opened(data)
        assert image.format == "PNG" and image.mode == "L"
        pixels = np.asarray(image)
        w, h = image.size
        assert 200 <= w <= 280 and 170 <= h <= 230
        sizes.add((w, h))
        assert np.median(pixels) == 255 and pixels.min() < 30  # white paper, dark ink
        ink = np.argwhere(pixels < 128)
        side = (ink.max(axis=0) - ink.min(axis=0)).max()
        sides.append(side / min(w, h))
        # the darkest pixels are the digit's strokes: inverted MNIST (255 - x), up to resampling
        assert pixels.min() <= 255 - x[row].max() + 10
    assert len(sizes) > 10 and max(sides) - min(sides) > 0.2  # canvas size and digit scale vary


def test_grey_paper_is_a_noisy_light_grey_jpeg_with_a_gradient(mnist: tuple) -> None:
    x, y = mnist
    for data in variants.mnist_grey_paper_jpeg(x, y, 10, 2).images:
        image = opened(data)
        assert image.format == "JPEG" and image.mode == "RGB"
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
        border = np.concatenate([pixels[:8].ravel(), pixels[-8:].ravel()])
        assert 140 <= np.median(border) <= 230  # light grey, not white
        assert pixels.min() < np.median(border) - 80  # ink
        corner = pixels[:12, :12]
        assert corner.std() > 1.5  # noise (JPEG q70 keeps some)
        rgb = np.asarray(image, dtype=np.float64)[:12, :12].reshape(-1, 3).mean(axis=0)
        assert rgb[0] > rgb[2] + 5  # warm paper tint


def test_exif_rotated_files_decode_upright_with_exif_and_sideways_without(photos: tuple) -> None:
    x, y = photos
    variant = variants.cifar_exif_rotated(x, y, 14, 0)
    seen = []
    for data, row in zip(variant.images, variant.indices, strict=True):
        image = opened(data)
        orientation = image.getexif().get(0x0112)
        seen.append(orientation)
        assert image.format == "JPEG"
        original = x[row].astype(int)
        upright = np.asarray(ImageOps.exif_transpose(image)).astype(int)
        stored = np.asarray(image).astype(int)
        assert upright.shape == original.shape and np.abs(upright - original).mean() < 4
        expected_stored = np.asarray(variants.stored_for_orientation(Image.fromarray(x[row]), orientation))
        assert np.abs(stored - expected_stored.astype(int)).mean() < 4
        assert np.abs(stored - original).mean() > 20  # without EXIF: flipped or sideways, visibly not the original
    assert seen == [2, 3, 4, 5, 6, 7, 8] * 2  # every orientation but upright, in turn


def test_photo_4x3_frames_the_object_with_mirrored_context(photos: tuple) -> None:
    x, y = photos
    variant = variants.cifar_photo_4x3(x, y, 6, 0)
    lefts = []
    for data, row in zip(variant.images, variant.indices, strict=True):
        image = opened(data)
        assert image.format == "JPEG" and image.size == variants.PHOTO
        pixels = np.asarray(image).astype(int)

        def mismatch(left: int, pixels: np.ndarray = pixels, row: int = row) -> float:
            square = Image.fromarray(pixels[:, left : left + 384].astype(np.uint8)).resize((32, 32))
            return float(np.abs(np.asarray(square).astype(int) - x[row]).mean())

        left = min(range(64 - 16, 64 + 17), key=mismatch)  # the object: 384x384, up to 16 px off centre
        lefts.append(left)
        assert mismatch(left) < 8
        # the context on both sides mirrors the object about its edges
        np.testing.assert_allclose(pixels[:, left - 30 : left][:, ::-1], pixels[:, left : left + 30], atol=40)
        assert np.abs(pixels[:, left - 30 : left][:, ::-1] - pixels[:, left : left + 30]).mean() < 4
    assert len(set(lefts)) > 1  # the framing varies


def test_printed_digits_cover_every_font_and_digit() -> None:
    fonts = variants.font_files() if variants.DEJAVU.is_dir() else []
    require(bool(fonts), f"no DejaVu fonts under {variants.DEJAVU}")
    variant = variants.printed_digits(count=None, seed=0)
    assert len(variant) == 3 * 10 * len(fonts)
    np.testing.assert_array_equal(variant.labels, np.arange(len(variant)) % 10)
    for data in variant.images[:20]:
        image = opened(data)
        pixels = np.asarray(image)
        assert image.format == "PNG" and image.size == variants.CANVAS
        assert np.median(pixels) == 255 and pixels.min() <= 60  # dark on white
    assert variants.printed_digits(count=25, seed=5).images == variants.printed_digits(count=25, seed=5).images
    assert variants.printed_digits(count=25, seed=5).images != variants.printed_digits(count=25, seed=6).images


def test_printed_digits_without_fonts_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(variants.FontsNotFound, match=f"no TrueType fonts.*under {tmp_path}"):
        variants.printed_digits(count=5, font_dir=tmp_path)
    with pytest.raises(variants.FontsNotFound, match="does-not-exist"):
        variants.font_files(tmp_path / "does-not-exist")
