"""Shared by the imaging tests: encoding images, forging headers and EXIF segments, test patterns."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from pixelserve import imaging

SHARED_DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
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


def exif_bytes(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[imaging.ORIENTATION_TAG] = orientation
    return exif.tobytes()


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
