"""How a reconstruction error becomes the anomaly and out-of-distribution verdicts clients see.

One rule for the server (which answers with it) and the training side (which measures it into model.json):

- A content-less input (every pixel the same value, such as a blank page, or what digit normalisation makes of
  an image in which it finds no ink) is foreign whatever its reconstruction error: an autoencoder reconstructs
  a flat image almost perfectly, so its error alone would call it normal. It scores CONTENTLESS_ERROR, the
  largest error a 0..1 image can have.
- The normalised score is error / (error + threshold): 0 for a perfect reconstruction, 0.5 at the calibrated
  threshold, approaching 1 far beyond it; a verdict is "score above 0.5", i.e. "error above the threshold".
"""

from __future__ import annotations

import numpy as np

CONTENTLESS_ERROR = 1.0


def contentless(batch: np.ndarray) -> np.ndarray:
    """Per image of a uint8 NHWC batch: True where every pixel has the same value."""
    flat = batch.reshape(len(batch), -1)
    return flat.min(axis=1) == flat.max(axis=1)


def effective_errors(errors: np.ndarray, batch: np.ndarray) -> np.ndarray:
    """The reconstruction errors a verdict is made on: content-less inputs at the largest error."""
    return np.where(contentless(batch), CONTENTLESS_ERROR, np.asarray(errors, dtype=np.float64))


def normalized_score(errors: np.ndarray | float, threshold: float) -> np.ndarray | float:
    """error / (error + threshold), in 0..1 with 0.5 at the threshold."""
    errors = np.asarray(errors, dtype=np.float64)
    return errors / np.maximum(errors + threshold, 1e-12)
