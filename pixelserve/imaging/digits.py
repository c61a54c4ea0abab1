"""Digit normalisation (``normalize_digit``), for MNIST-style models; how MNIST itself was made:
1. An image already in the model's format (height x width, ink only inside the 20x20 box, the centre of mass
   within half a pixel of the centre (14, 14), so a dark background) is returned unchanged, bit for bit; so is
   this function's own output, which makes it idempotent.
2. Polarity from the border: when the median of a border ring (5% of the short side) is nearer the image's bright
   end than its dark end, the background is light and the image is inverted (bright ink on dark, as MNIST).
3. Background: a plane through the medians of the four border strips (a gentle illumination gradient; medians
   ignore ink that touches the border), subtracted. The noise sigma is the border's median absolute deviation.
4. Ink: above max(4 sigma + 2, 30% of the stroke level), the stroke level being the 90th percentile of the pixels
   above Otsu's threshold. Connected blobs (8-connected) smaller than 3% of the largest, or than 3 pixels, are
   specks (dust, JPEG speckle): they neither widen the bounding box nor survive into the output. No ink (nothing
   clears the noise floor): a blank frame, not an error.
5. Crop to the ink's bounding box; stretch contrast (twice the noise sigma -> 0, stroke level -> 255; skipped when
   the background is clean and the strokes reach 250, as MNIST's); scale to fit the 20x20 box keeping the aspect
   ratio (Lanczos, antialiased); a brightest pixel below 250 (thin strokes shrunk) is brought to 255; paste into
   height x width (28x28) shifted by whole pixels so that the centre of mass sits at (14, 14) as far as the frame
   allows (MNIST's centres lie within [13.5, 14.5]). Other frame sizes scale the 20/28 box.
Images larger than WORK_SIDE (640) pixels on a side are first reduced (box filter): the digit ends 20 pixels
across anyway, and the work stays bounded (a 240x200 scan takes about 1-2 ms).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from pixelserve.imaging.geometry import scaled_size

DIGIT_RESAMPLE = Image.Resampling.LANCZOS


# MNIST's geometry: the digit fits a 20x20 box, centred by mass at (14, 14) of a 28x28 frame
DIGIT_FRAME = 28


DIGIT_BOX = 20


WORK_SIDE = 640  # digit images are reduced to this many pixels on the long side before the ink is searched


INK_FRACTION = 0.3  # ink: above this fraction of the stroke level (and above the noise floor)


SPECK_FRACTION = 0.03  # connected ink blobs smaller than this fraction of the largest are specks


SPECK_MIN_AREA = 3  # ... and so is any blob below this many pixels


FULL_INK = 250  # stroke level that needs no contrast stretch (MNIST's strokes peak at 254-255)


CENTRE_TOLERANCE = 0.5 + 1e-6  # pixels; MNIST's centres of mass lie within [13.5, 14.5]


def _box_size(height: int, width: int) -> tuple[int, int]:
    return max(1, round(height * DIGIT_BOX / DIGIT_FRAME)), max(1, round(width * DIGIT_BOX / DIGIT_FRAME))


def _as_gray(pixels: np.ndarray) -> np.ndarray:
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim != 2 or pixels.dtype != np.uint8 or pixels.size == 0:
        raise ValueError(f"expected a non-empty 2-D uint8 grey image, got {pixels.dtype} {pixels.shape}")
    return pixels


def _extent(profile: np.ndarray) -> tuple[int, int] | None:
    """First and last index where a 1-D profile is non-zero."""
    hits = np.flatnonzero(profile)
    return (int(hits[0]), int(hits[-1])) if hits.size else None


def _whole_shift(wanted: float, lowest: int, highest: int) -> int:
    """Whole pixels to move by: none within the tolerance, else rounded, within what keeps the ink inside."""
    if abs(wanted) <= CENTRE_TOLERANCE:
        return 0
    return min(max(int(np.floor(wanted + 0.5)), lowest), highest)


def _mass_shift(frame: np.ndarray) -> tuple[int, int]:
    """The shift that puts the centre of mass at the frame's centre (MNIST: (14, 14)), limited to the frame."""
    rows, cols = frame.sum(axis=1, dtype=np.float64), frame.sum(axis=0, dtype=np.float64)
    total = rows.sum()
    row_extent, col_extent = _extent(rows), _extent(cols)
    if total == 0 or row_extent is None or col_extent is None:
        return 0, 0
    height, width = frame.shape
    centre_y = float(rows @ np.arange(height)) / total
    centre_x = float(cols @ np.arange(width)) / total
    dy = _whole_shift(height / 2 - centre_y, -row_extent[0], height - 1 - row_extent[1])
    dx = _whole_shift(width / 2 - centre_x, -col_extent[0], width - 1 - col_extent[1])
    return dy, dx


def is_digit_normalized(pixels: np.ndarray, *, height: int = DIGIT_FRAME, width: int = DIGIT_FRAME) -> bool:
    """Already MNIST-format: the frame's size, ink (non-zero pixels) within the box, centred by mass."""
    gray = _as_gray(pixels)
    if gray.shape != (height, width):
        return False
    rows, cols = _extent(gray.any(axis=1)), _extent(gray.any(axis=0))
    if rows is None or cols is None:
        return True
    box_h, box_w = _box_size(height, width)
    if rows[1] - rows[0] + 1 > box_h or cols[1] - cols[0] + 1 > box_w:
        return False
    return _mass_shift(gray) == (0, 0)


def normalize_digit(pixels: np.ndarray, *, height: int = DIGIT_FRAME, width: int = DIGIT_FRAME) -> np.ndarray:
    """A grey image of one digit, any size and polarity -> MNIST format: bright ink on black, height x width."""
    gray = _as_gray(pixels)
    if is_digit_normalized(gray, height=height, width=width):
        return gray.copy()
    gray = _reduce(gray, WORK_SIDE)
    signal, noise = _ink_signal(gray)
    found = _find_ink(signal, noise)
    if found is None:
        return np.zeros((height, width), dtype=np.uint8)
    crop, stroke = found
    digit = _fit_box(_stretch(crop, low=2 * noise, high=stroke), *_box_size(height, width))
    return _place_by_mass(digit, height, width)


def _reduce(gray: np.ndarray, side: int) -> np.ndarray:
    h, w = gray.shape
    if max(h, w) <= side:
        return gray
    size = scaled_size(w, h, side / max(h, w))
    return np.asarray(Image.fromarray(gray).resize(size, Image.Resampling.BOX))


def _histogram_level(histogram: np.ndarray, fraction: float) -> int:
    """The grey level below which ``fraction`` of the pixels lie."""
    return int(np.searchsorted(np.cumsum(histogram), fraction * histogram.sum()))


def _median_level(pixels: np.ndarray) -> float:
    """The median of uint8 pixels from their histogram (several times faster than np.median)."""
    return float(_histogram_level(np.bincount(pixels.ravel(), minlength=256), 0.5))


def _strips(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """The top, bottom, left and right border strips, about 5% of the short side wide (at least one pixel):
    where the background is. None when the image is too small to have a border apart from its inside."""
    h, w = gray.shape
    t = max(1, round(min(h, w) * 0.05))
    if min(h, w) < 8 or h <= 2 * t or w <= 2 * t:
        return None
    return gray[:t], gray[-t:], gray[:, :t], gray[:, -t:]


def _ink_signal(gray: np.ndarray) -> tuple[np.ndarray, float]:
    """Ink as bright-on-zero float32 (inverted when the background is light, background plane removed), noise sigma.

    The background is a plane through the medians of the four border strips (a gentle illumination gradient;
    the median ignores ink that touches the border). The noise is the border's median absolute deviation from it.
    """
    histogram = np.bincount(gray.ravel(), minlength=256)
    darkest, brightest = _histogram_level(histogram, 0.001), _histogram_level(histogram, 0.999)
    strips = _strips(gray)
    ring = gray.ravel() if strips is None else np.concatenate([strip.ravel() for strip in strips])
    level = _median_level(ring)
    light = (level - darkest) > (brightest - level) or (level - darkest == brightest - level and level >= 128)
    values = 255.0 - gray.astype(np.float32) if light else gray.astype(np.float32)
    if strips is None:
        signal = values - (255.0 - level if light else level)
        return signal, _mad_sigma(signal.ravel())
    top, bottom, left, right = (_median_level(strip) for strip in strips)
    if light:
        top, bottom, left, right = 255.0 - top, 255.0 - bottom, 255.0 - left, 255.0 - right
    h, w = gray.shape
    t = strips[0].shape[0]
    slope_y, slope_x = (bottom - top) / (h - t), (right - left) / (w - t)
    rows = ((top + bottom + left + right) / 4 + slope_y * (np.arange(h) - (h - 1) / 2)).astype(np.float32)
    cols = (slope_x * (np.arange(w) - (w - 1) / 2)).astype(np.float32)
    signal = values - rows[:, np.newaxis] - cols[np.newaxis, :]
    border = [signal[:t], signal[-t:], signal[t:-t, :t], signal[t:-t, -t:]]
    return signal, _mad_sigma(np.concatenate([strip.ravel() for strip in border]))


def _mad_sigma(residuals: np.ndarray) -> float:
    """Gaussian-equivalent noise sigma from the median absolute deviation (robust to ink and specks), on at most
    about 4,000 evenly spaced samples (plenty for one number)."""
    residuals = residuals[:: max(1, residuals.size // 4000)]
    return 1.4826 * float(np.median(np.abs(residuals - np.median(residuals))))


def _otsu(histogram: np.ndarray) -> int:
    """Otsu's threshold of a 256-bin histogram (the level maximising the between-class variance)."""
    weights = np.cumsum(histogram, dtype=np.float64)
    means = np.cumsum(histogram * np.arange(histogram.size), dtype=np.float64)
    total, total_mean = weights[-1], means[-1]
    background, foreground = weights, total - weights
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (total_mean * background - means * total) ** 2 / (background * foreground)
    between[~np.isfinite(between)] = 0.0
    return int(np.argmax(between))


def _find_ink(signal: np.ndarray, noise: float) -> tuple[np.ndarray, float] | None:
    """The ink's bounding box of ``signal`` with specks removed, and the stroke level; None when blank."""
    floor = 4 * noise + 2
    quantised = np.clip(signal, 0, 255).astype(np.uint8)
    core = signal > max(floor, _otsu(np.bincount(quantised.ravel(), minlength=256)))
    if not core.any():
        return None
    stroke = _quantile(signal[core], 0.9)
    mask = signal > max(floor, INK_FRACTION * stroke)
    runs = _Runs(mask)
    if runs.count == 0:
        return None
    specks = runs.small_components(SPECK_FRACTION, SPECK_MIN_AREA)
    kept = ~specks
    top, bottom = int(runs.row[kept].min()), int(runs.row[kept].max())
    left, right = int(runs.start[kept].min()), int(runs.end[kept].max())
    crop = signal[top : bottom + 1, left:right].copy()
    if specks.any():
        crop[runs.paint(specks, top, left, crop.shape)] = 0
    return crop, stroke


def _quantile(values: np.ndarray, q: float) -> float:
    """A quantile by partition (the nearest rank below; np.percentile is several times slower)."""
    k = int(q * (values.size - 1))
    return float(np.partition(values, k)[k])


class _Runs:
    """Horizontal runs of a boolean mask (row, [start, end)), grouped into 8-connected components."""

    def __init__(self, mask: np.ndarray) -> None:
        h, w = mask.shape
        padded = np.zeros((h, w + 2), dtype=bool)
        padded[:, 1:-1] = mask
        rows, cols = np.nonzero(padded[:, 1:] != padded[:, :-1])  # each run: its start, then its end
        self.row, self.start, self.end = rows[0::2], cols[0::2], cols[1::2]
        self.count = self.row.size
        self.width = w

    def paint(self, which: np.ndarray, top: int, left: int, shape: tuple[int, int]) -> np.ndarray:
        """The pixels of the chosen runs inside a window at (top, left) of ``shape``, as a boolean mask."""
        rows = self.row[which] - top
        inside = (rows >= 0) & (rows < shape[0])
        rows = rows[inside]
        starts = np.clip(self.start[which][inside] - left, 0, shape[1])
        ends = np.clip(self.end[which][inside] - left, 0, shape[1])
        steps = np.zeros((shape[0], shape[1] + 1), dtype=np.int32)
        np.add.at(steps, (rows, starts), 1)
        np.add.at(steps, (rows, ends), -1)
        return np.cumsum(steps, axis=1)[:, :-1] > 0

    def small_components(self, fraction: float, min_area: int) -> np.ndarray:
        """Which runs belong to components smaller than ``fraction`` of the largest or ``min_area`` pixels; the
        largest component is never small (a tiny image's only ink is its digit)."""
        labels = self._labels()
        area = np.bincount(labels, weights=self.end - self.start, minlength=self.count)[labels]
        largest = area.max()
        return (area < largest) & (area < max(min_area, fraction * largest))

    def _labels(self) -> np.ndarray:
        """Each run's component, by hooking roots along the edges and compressing paths until stable."""
        first, second = self._edges()
        labels = np.arange(self.count)
        while first.size:
            a, b = labels[first], labels[second]
            if (a == b).all():
                break
            np.minimum.at(labels, np.maximum(a, b), np.minimum(a, b))
            while True:
                jumped = labels[labels]
                if (jumped == labels).all():
                    break
                labels = jumped
        return labels

    def _edges(self) -> tuple[np.ndarray, np.ndarray]:
        """Pairs of runs in adjacent rows that touch, diagonals included."""
        stride = self.width + 2
        start_key = self.row * stride + self.start
        end_key = self.row * stride + self.end
        # below run i: the runs of the next row from the first ending at or after its start to the last
        # starting at or before its end (runs in a row are disjoint and sorted)
        below = (self.row + 1) * stride
        lo = np.searchsorted(end_key, below + self.start, side="left")
        hi = np.searchsorted(start_key, below + self.end, side="right")
        counts = np.maximum(hi - lo, 0)
        first = np.repeat(np.arange(self.count), counts)
        offsets = np.arange(first.size) - np.repeat(np.cumsum(counts) - counts, counts)
        second = np.repeat(lo, counts) + offsets
        return first, second


def _stretch(crop: np.ndarray, *, low: float, high: float) -> np.ndarray:
    """Noise floor -> 0, stroke level -> 255, clipped; uint8. Ink that already spans the range (a clean background
    and strokes at FULL_INK or more, as MNIST's 254-255) is only clipped: a moved MNIST digit keeps its values."""
    if low < 1.0 and high >= FULL_INK:
        return np.clip(np.rint(crop), 0, 255).astype(np.uint8)
    span = max(high - low, 1.0)
    return np.clip(np.rint((crop - low) * (255.0 / span)), 0, 255).astype(np.uint8)


def _fit_box(crop: np.ndarray, box_h: int, box_w: int) -> np.ndarray:
    """Scaled to fit box_h x box_w keeping the aspect ratio; a brightest pixel below FULL_INK (thin strokes shrunk)
    brought to 255, as MNIST's strokes."""
    h, w = crop.shape
    size = scaled_size(w, h, min(box_h / h, box_w / w))
    digit = np.asarray(Image.fromarray(crop).resize(size, DIGIT_RESAMPLE)) if size != (w, h) else crop
    peak = int(digit.max())
    if 0 < peak < FULL_INK:
        digit = np.rint(digit * (255.0 / peak)).astype(np.uint8)
    return digit


def _place_by_mass(digit: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pasted into a black height x width frame with its centre of mass at the centre, as far as the frame allows."""
    frame = np.zeros((height, width), dtype=np.uint8)
    total = float(digit.sum(dtype=np.float64))
    if total == 0:
        return frame
    h, w = digit.shape
    centre_y = float(digit.sum(axis=1, dtype=np.float64) @ np.arange(h)) / total
    centre_x = float(digit.sum(axis=0, dtype=np.float64) @ np.arange(w)) / total
    top = min(max(int(np.floor(height / 2 - centre_y + 0.5)), 0), height - h)
    left = min(max(int(np.floor(width / 2 - centre_x + 0.5)), 0), width - w)
    frame[top : top + h, left : left + w] = digit
    for _ in range(2):  # the check's own rule, so that is_digit_normalized holds for the result exactly
        dy, dx = _mass_shift(frame)
        if (dy, dx) == (0, 0):
            break
        frame = np.roll(frame, (dy, dx), axis=(0, 1))
    return frame
