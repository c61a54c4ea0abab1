"""The drift statistics, defined once: export records them on the test split (model.json ``drift``) and the
server keeps them over a rolling window of live traffic, so both sides count the same bins.

- ``pixels``: the model input's intensities in 16 equal bins over 0..255 (after preprocessing: what the
  model sees);
- ``predictions``: the share of each predicted class (classifiers);
- ``ood_score`` / ``reconstruction_error``: the served score in the ten buckets cut by its test-split deciles
  (so each bucket holds a tenth of the baseline).

Drift is the population stability index of live counts against the baseline shares,
PSI = sum((a - e) * ln(a / e)), with empty bins floored. The usual reading: below 0.1 stable, 0.1 to 0.25
a moderate shift, above 0.25 a significant one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PIXEL_BINS = 16
DECILES = tuple(float(q) for q in np.linspace(0.1, 0.9, 9))
FLOOR = 1e-4  # share given to an empty bin on either side, so a missing bin costs a bounded amount
MODERATE, SIGNIFICANT = 0.1, 0.25


def pixel_counts(batch: np.ndarray) -> np.ndarray:
    """Counts of uint8 intensities in PIXEL_BINS equal bins (bin = value // 16)."""
    if batch.dtype != np.uint8:
        raise TypeError(f"pixel statistics are of uint8 model inputs, not {batch.dtype}")
    return np.bincount((batch.reshape(-1) >> 4), minlength=PIXEL_BINS).astype(np.int64)


def class_counts(predicted: np.ndarray, classes: int) -> np.ndarray:
    return np.bincount(predicted.astype(np.int64), minlength=classes)[:classes].astype(np.int64)


def score_counts(scores: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Counts in the len(edges) + 1 buckets the edges cut: (-inf, e0], (e0, e1], ..., (e_last, inf)."""
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), np.asarray(scores, dtype=np.float64), side="left")
    return np.bincount(index, minlength=len(edges) + 1).astype(np.int64)


def shares(counts: np.ndarray) -> list[float]:
    total = int(counts.sum())
    return [round(float(c) / max(1, total), 6) for c in counts]


def score_edges(scores: np.ndarray) -> list[float]:
    return [float(q) for q in np.quantile(np.asarray(scores, dtype=np.float64), DECILES)]


def score_shares(edges: Sequence[float]) -> list[float]:
    """The baseline share of each score bucket: a tenth each, by construction of the deciles."""
    return [float(share) for share in np.diff(np.linspace(0.0, 1.0, len(edges) + 2))]


def psi(expected: Sequence[float], counts: np.ndarray) -> float:
    """Population stability index of observed `counts` against `expected` shares (same bins)."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), FLOOR)
    a = np.maximum(counts.astype(np.float64) / max(1, int(counts.sum())), FLOOR)
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))
