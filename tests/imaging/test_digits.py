"""pixelserve.imaging.digits: MNIST-style digit normalisation of scans, photos and drawings."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pixelserve import imaging

from .support import decoded, distance, encode, on_paper

# ---------------------------------------------------------------------------------------------------- digits


def mass_centre(frame: np.ndarray) -> tuple[float, float]:
    ys, xs = np.mgrid[0 : frame.shape[0], 0 : frame.shape[1]]
    total = frame.sum(dtype=np.float64)
    return float((frame * ys).sum() / total), float((frame * xs).sum() / total)


def ink_box(frame: np.ndarray) -> tuple[int, int]:
    rows, cols = np.flatnonzero(frame.any(axis=1)), np.flatnonzero(frame.any(axis=0))
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


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
