"""Calibrated confidence: temperature scaling (Guo et al. 2017) of a classifier's probabilities.

A classifier's top probability should be the chance that its top label is right. Trained networks tend to be
over-confident; dividing the logits by one temperature T > 1 fixes most of that without changing any
prediction (the order of the classes is kept). The exported graph outputs probabilities, not logits, so the
served graph scales them as ``softmax(log(max(p, FLOOR)) / T)``: `scale` computes exactly that, and the numbers
in model.json (`pixelserve.measured.Calibration`) describe the served graph.

T is fitted on the validation split (never on the test split it is judged on) by minimising the negative
log-likelihood with a golden-section search on log T. numpy only.
"""

from __future__ import annotations

import math

import numpy as np

from pixelserve.measured import Calibration

# Probabilities are clipped here before the log: float32 softmax outputs may be exactly 0 (or 1, leaving the
# others at 0). The smallest normal float32 replaces only zeros and subnormals, and the exported graph can use
# the same constant in float32.
FLOOR = float(np.finfo(np.float32).tiny)
T_MIN, T_MAX = 0.05, 20.0
BINS = 15
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
_TOLERANCE = 1e-6  # on log T: far below what changes the metrics


def _checked(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, K) float64 probabilities and (N,) int labels, or ValueError naming what is wrong."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels).reshape(-1).astype(np.int64)
    if p.ndim != 2 or len(p) == 0 or len(p) != len(y):
        raise ValueError(f"expected (N, K) probabilities and N labels, got {p.shape} and {y.shape}")
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(f"labels must lie in 0..{p.shape[1] - 1}")
    if not np.isfinite(p).all():
        raise ValueError("probabilities must be finite")
    return p, y


def _log_scaled(p: np.ndarray, temperature: float) -> np.ndarray:
    """log softmax(log(max(p, FLOOR)) / T), through log-sum-exp so nothing overflows or underflows to -inf."""
    z = np.log(np.maximum(p, FLOOR)) / temperature
    z -= z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def scale(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """p^(1/T) renormalised per row, as the served graph computes it; T=1 returns the (clipped) input."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    p = np.asarray(probabilities, dtype=np.float64)
    return np.exp(_log_scaled(p, temperature))


def _nll_at(p: np.ndarray, y: np.ndarray, temperature: float) -> float:
    return float(-_log_scaled(p, temperature)[np.arange(len(y)), y].mean())


def nll(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true labels (natural log), probabilities clipped at FLOOR."""
    p, y = _checked(probabilities, labels)
    return float(-np.log(np.maximum(p[np.arange(len(y)), y], FLOOR)).mean())


def ece(probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error: sum over equal-width bins (lo, hi] of the top-1 confidence of
    share-of-samples * |accuracy - mean confidence|; a confidence of exactly 0 falls in the first bin."""
    p, y = _checked(probabilities, labels)
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    # per bin, count * |accuracy - confidence| is |sum(correct - confidence)|
    gap = np.bincount(index, weights=correct - confidence, minlength=bins)
    return float(np.abs(gap).sum() / len(y))


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The T in [T_MIN, T_MAX] minimising the NLL of the scaled probabilities.

    The NLL is convex in 1/T (a log-sum-exp of terms linear in 1/T, minus a linear term), hence unimodal in
    log T, so a golden-section search on log T finds the minimum without derivatives or a starting guess.
    """
    p, y = _checked(probabilities, labels)
    lo, hi = math.log(T_MIN), math.log(T_MAX)
    a, b = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
    fa, fb = _nll_at(p, y, math.exp(a)), _nll_at(p, y, math.exp(b))
    while hi - lo > _TOLERANCE:
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - _GOLDEN * (hi - lo)
            fa = _nll_at(p, y, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + _GOLDEN * (hi - lo)
            fb = _nll_at(p, y, math.exp(b))
    return math.exp((lo + hi) / 2.0)


def metrics(probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS) -> dict[str, float]:
    """The calibration numbers model.json records: ECE and NLL."""
    return {"ece": ece(probabilities, labels, bins), "nll": nll(probabilities, labels)}


def calibrate(
    val_probs: np.ndarray,
    val_labels: np.ndarray,
    test_probs: np.ndarray,
    test_labels: np.ndarray,
    fitted_on: str,
    bins: int = BINS,
) -> Calibration:
    """T fitted on the validation split, judged on the test split: the ECE and NLL before and after scaling."""
    temperature = fit_temperature(val_probs, val_labels)
    return Calibration(
        temperature=temperature,
        fitted_on=fitted_on,
        bins=bins,
        before=metrics(test_probs, test_labels, bins),
        after=metrics(scale(test_probs, temperature), test_labels, bins),
    )


def lowers_ece(probabilities: np.ndarray, labels: np.ndarray, temperature: float, *, resamples: int = 200,
               confidence: float = 0.95, seed: int = 0) -> bool:  # fmt: skip
    """Whether scaling by `temperature` lowers the ECE of these (validation) predictions in at least
    `confidence` of bootstrap resamples. A very accurate model's ECE on a few thousand images is mostly sampling
    noise, and a temperature that lowers it once may raise it on the test split: only a reliable gain counts."""
    p, y = _checked(probabilities, labels)
    scaled = scale(p, temperature)
    rng = np.random.default_rng(seed)
    wins = 0
    for _ in range(resamples):
        pick = rng.integers(0, len(y), len(y))
        wins += ece(scaled[pick], y[pick]) < ece(p[pick], y[pick])
    return wins >= confidence * resamples
