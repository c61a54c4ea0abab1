"""Real-world variants of the real test splits, made in code: what clients upload instead of dataset images.

Each generator draws from the test arrays with a seeded generator (the same seed gives the same bytes) and returns
a ``Variant``: encoded files, as a client would send them, and their labels.

- ``mnist_paper``: dark ink on a white canvas of about 240x200, the digit scaled up and placed at random.
- ``mnist_grey_paper_jpeg``: the same on light grey paper with a gentle illumination gradient, Gaussian noise and
  dark specks (dust), saved as JPEG quality 70.
- ``printed_digits``: the digits 0-9 in every DejaVu TrueType font the machine has, at various sizes and small
  offsets, dark on white. ``FontsNotFound`` when there is none.
- ``cifar_exif_rotated``: JPEGs whose pixels are stored rotated or flipped, with the EXIF orientation (2-8, in
  turn) that undoes it: a viewer that honours EXIF shows the original, one that does not shows it sideways.
- ``cifar_photo_4x3``: the 32x32 image upscaled into a 512x384 frame with mirrored context on the sides and a
  small horizontal offset, as a phone photo framing the object.

numpy and Pillow only.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
CANVAS = (240, 200)  # width, height: about what a phone crop or a scanner snippet of one digit gives
PHOTO = (512, 384)  # a 4:3 frame
PAPER_JPEG_QUALITY = 70
PHOTO_JPEG_QUALITY = 90
ORIENTATIONS = (2, 3, 4, 5, 6, 7, 8)

# The transpose that stores an upright image so that EXIF orientation n shows it upright again: the inverse of
# PIL.ImageOps.exif_transpose's step (rotations swap direction, flips and transposes are their own inverse).
STORE_FOR_ORIENTATION: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


class FontsNotFound(RuntimeError):
    """No TrueType font to print digits with; the message names where they were looked for."""


@dataclass(frozen=True)
class Variant:
    name: str
    images: list[bytes]  # encoded files (PNG or JPEG), what a client uploads
    labels: np.ndarray  # int64 (N,)
    indices: np.ndarray | None = None  # the test-split rows they were made from (None for printed digits)

    def __len__(self) -> int:
        return len(self.images)


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _pick(labels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` distinct test rows (all of them, shuffled, when count is larger)."""
    n = len(labels)
    return np.sort(rng.choice(n, size=min(count, n), replace=False))


def _gray(x: np.ndarray) -> np.ndarray:
    """(N, H, W) from (N, H, W) or (N, H, W, 1)."""
    return x[..., 0] if x.ndim == 4 else x


def _placed_digit(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An MNIST digit as a darkness map (float 0..1) on a canvas of about CANVAS, scaled to 40-100% of its short
    side and placed at random."""
    width = int(rng.integers(CANVAS[0] - 40, CANVAS[0] + 41))
    height = int(rng.integers(CANVAS[1] - 30, CANVAS[1] + 31))
    side = int(rng.integers(round(0.4 * min(width, height)), min(width, height) + 1))
    scaled = Image.fromarray(digit).resize((side, side), Image.Resampling.BILINEAR)
    left, top = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
    darkness = np.zeros((height, width), dtype=np.float32)
    darkness[top : top + side, left : left + side] = np.asarray(scaled, dtype=np.float32) / 255.0
    return darkness


def mnist_paper(x: np.ndarray, y: np.ndarray, count: int, seed: int) -> Variant:
    """MNIST digits as dark ink on white paper: inverted, scaled up (40-100% of the short side), placed at random."""
    rng = np.random.default_rng(seed)
    rows = _pick(y, count, rng)
    images = []
    for digit in _gray(x)[rows]:
        pixels = np.rint(255.0 * (1.0 - _placed_digit(digit, rng))).astype(np.uint8)
        images.append(_encode(Image.fromarray(pixels), "PNG"))
    return Variant("paper", images, y[rows].astype(np.int64), rows)


def mnist_grey_paper_jpeg(x: np.ndarray, y: np.ndarray, count: int, seed: int) -> Variant:
    """MNIST digits on light grey, slightly warm paper: illumination gradient, noise, dust specks, JPEG q70."""
    rng = np.random.default_rng(seed)
    rows = _pick(y, count, rng)
    images = []
    for digit in _gray(x)[rows]:
        paper = _grey_paper(_placed_digit(digit, rng), rng)
        images.append(_encode(Image.fromarray(paper), "JPEG", quality=PAPER_JPEG_QUALITY))
    return Variant("grey-paper-jpeg", images, y[rows].astype(np.int64), rows)


def _grey_paper(darkness: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """RGB uint8: paper at 165-215 with a +-10..25 linear gradient, ink 100-160 darker, noise, dark specks."""
    height, width = darkness.shape
    paper = rng.uniform(165, 215)
    angle = rng.uniform(0, 2 * np.pi)
    swing = rng.uniform(10, 25)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    gradient = swing * (np.cos(angle) * (xs / width - 0.5) + np.sin(angle) * (ys / height - 0.5)) * 2
    level = paper + gradient - rng.uniform(100, 160) * darkness
    level += rng.normal(0.0, rng.uniform(3, 8), size=level.shape)
    specks = rng.random(level.shape) < rng.uniform(0.0005, 0.003)
    level[specks] -= rng.uniform(40, 110, size=int(specks.sum()))
    tint = np.array([1.0, 0.98, 0.93], dtype=np.float32)  # warm paper: the decoder's luma conversion is exercised
    return np.clip(np.rint(level[..., np.newaxis] * tint), 0, 255).astype(np.uint8)


def font_files(font_dir: Path = DEJAVU) -> list[Path]:
    """Every TrueType font under ``font_dir``, sorted; FontsNotFound when there is none."""
    fonts = sorted(font_dir.rglob("*.ttf")) if font_dir.is_dir() else []
    if not fonts:
        raise FontsNotFound(f"no TrueType fonts (*.ttf) under {font_dir}; install fonts-dejavu-core or pass font_dir")
    return fonts


def printed_digits(count: int | None = None, seed: int = 0, *, font_dir: Path = DEJAVU) -> Variant:
    """The digits 0-9 printed in every font, dark (0-60) on white, 50-170 px tall, offset up to +-10% of the canvas.

    Image i shows digit i % 10 in font (i // 10) % fonts; ``count`` defaults to every font x digit, three times.
    """
    fonts = font_files(font_dir)
    rng = np.random.default_rng(seed)
    total = count if count is not None else 3 * 10 * len(fonts)
    images, labels = [], []
    loaded: dict[tuple[Path, int], ImageFont.FreeTypeFont] = {}
    for i in range(total):
        digit, font_path = i % 10, fonts[(i // 10) % len(fonts)]
        size = int(rng.integers(50, 171))
        font = loaded.setdefault((font_path, size), ImageFont.truetype(str(font_path), size))
        images.append(_encode(_print(str(digit), font, rng), "PNG"))
        labels.append(digit)
    return Variant("printed", images, np.array(labels, dtype=np.int64))


def _print(text: str, font: ImageFont.FreeTypeFont, rng: np.random.Generator) -> Image.Image:
    canvas = Image.new("L", CANVAS, 255)
    draw = ImageDraw.Draw(canvas)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    dx = int(rng.integers(-CANVAS[0] // 10, CANVAS[0] // 10 + 1))
    dy = int(rng.integers(-CANVAS[1] // 10, CANVAS[1] // 10 + 1))
    origin = ((CANVAS[0] - (right - left)) / 2 - left + dx, (CANVAS[1] - (bottom - top)) / 2 - top + dy)
    draw.text(origin, text, fill=int(rng.integers(0, 61)), font=font)
    return canvas


def stored_for_orientation(image: Image.Image, orientation: int) -> Image.Image:
    """The pixels a camera stores for an upright ``image`` when it writes EXIF ``orientation`` (1-8)."""
    method = STORE_FOR_ORIENTATION.get(orientation)
    return image if method is None else image.transpose(method)


def cifar_exif_rotated(x: np.ndarray, y: np.ndarray, count: int, seed: int) -> Variant:
    """CIFAR-10 images stored transposed as orientation 2, 3, ..., 8 (in turn) undoes; JPEG q90 with that EXIF tag."""
    rng = np.random.default_rng(seed)
    rows = _pick(y, count, rng)
    images = []
    for i, pixels in enumerate(x[rows]):
        orientation = ORIENTATIONS[i % len(ORIENTATIONS)]
        exif = Image.Exif()
        exif[0x0112] = orientation
        stored = stored_for_orientation(Image.fromarray(pixels), orientation)
        images.append(_encode(stored, "JPEG", quality=PHOTO_JPEG_QUALITY, exif=exif.tobytes()))
    return Variant("exif-rotated", images, y[rows].astype(np.int64), rows)


def cifar_photo_4x3(x: np.ndarray, y: np.ndarray, count: int, seed: int) -> Variant:
    """CIFAR-10 images upscaled (bicubic) to 384x384 in a 512x384 frame, mirrored context on both sides, the object
    up to 16 px off centre; JPEG q90."""
    rng = np.random.default_rng(seed)
    rows = _pick(y, count, rng)
    width, height = PHOTO
    images = []
    for pixels in x[rows]:
        scaled = np.asarray(Image.fromarray(pixels).resize((height, height), Image.Resampling.BICUBIC))
        margin = width - height
        left = margin // 2 + int(rng.integers(-16, 17))
        framed = np.pad(scaled, ((0, 0), (left, margin - left), (0, 0)), mode="symmetric")
        images.append(_encode(Image.fromarray(framed), "JPEG", quality=PHOTO_JPEG_QUALITY))
    return Variant("photo-4x3", images, y[rows].astype(np.int64), rows)


def plain(
    name: str, x: np.ndarray, y: np.ndarray, count: int, seed: int, *, jpeg_quality: int | None = None
) -> Variant:
    """Test images unchanged, as PNG (lossless) or as JPEG of the given quality: the comparison rows."""
    rng = np.random.default_rng(seed)
    rows = _pick(y, count, rng)
    fmt, options = ("PNG", {}) if jpeg_quality is None else ("JPEG", {"quality": jpeg_quality})
    images = [_encode(Image.fromarray(x[i][..., 0] if x[i].shape[-1:] == (1,) else x[i]), fmt, **options) for i in rows]
    return Variant(name, images, y[rows].astype(np.int64), rows)


Generator = Callable[[np.ndarray, np.ndarray, int, int], Variant]
MNIST_VARIANTS: dict[str, Generator] = {"paper": mnist_paper, "grey-paper-jpeg": mnist_grey_paper_jpeg}
CIFAR_VARIANTS: dict[str, Generator] = {"exif-rotated": cifar_exif_rotated, "photo-4x3": cifar_photo_4x3}
