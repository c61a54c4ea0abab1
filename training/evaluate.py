"""Quality of an exported model, measured with onnxruntime on the real test split.

Measuring the ONNX graph (not the Keras model) means the numbers in model.json describe exactly what is
served. Nothing here imports TensorFlow, so the committed-model checks stay light.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from pixelserve.modelspec import (
    INPUT_IMAGE,
    OUTPUT_ERROR,
    OUTPUT_PROBABILITIES,
    OUTPUT_RECONSTRUCTION,
    AnomalyThreshold,
)

EVAL_BATCH = 500


def cpu_session(model_path: Path, threads: int = 0) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])


def run_batched(session: ort.InferenceSession, x: np.ndarray, output: str) -> np.ndarray:
    return np.concatenate([session.run([output], {INPUT_IMAGE: b})[0] for b in _batches(x)])


def _batches(x: np.ndarray) -> Iterator[np.ndarray]:
    for start in range(0, len(x), EVAL_BATCH):
        yield x[start : start + EVAL_BATCH]


# ---- classifiers -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassifierQuality:
    accuracy: float
    per_class: dict[str, float]
    confusion: np.ndarray  # (K, K): rows true, columns predicted
    probabilities: np.ndarray | None = None  # (N, K) as served, for calibration checks on the same run


def classifier_quality(
    session: ort.InferenceSession, x: np.ndarray, y: np.ndarray, labels: list[str]
) -> ClassifierQuality:
    probabilities = run_batched(session, x, OUTPUT_PROBABILITIES)
    predicted = probabilities.argmax(axis=1)
    k = len(labels)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (y, predicted), 1)
    per_class = {label: float(confusion[i, i] / max(1, confusion[i].sum())) for i, label in enumerate(labels)}
    return ClassifierQuality(float((predicted == y).mean()), per_class, confusion, probabilities)


# ---- autoencoders ------------------------------------------------------------------------------------------


def add_noise(x: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Gaussian noise on uint8 images, clipped and re-quantised: what a noisy PNG sent to the server holds."""
    rng = np.random.default_rng(seed)
    noisy = x.astype(np.float32) / 255.0 + rng.normal(0.0, sigma, x.shape).astype(np.float32)
    return np.round(np.clip(noisy, 0.0, 1.0) * 255.0).astype(np.uint8)


def psnr(reference: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """Per-image PSNR in dB for images in [0, 1]."""
    mse = ((reference - estimate) ** 2).reshape(len(reference), -1).mean(axis=1)
    return 10.0 * np.log10(1.0 / np.maximum(mse, 1e-10))


_SSIM_CHUNK = 16  # images per pass: the blurs' temporaries stay in cache (4x faster than the whole split at once)


def _blur(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    """The valid part of a separable correlation with `g` over height, then width (NHWC)."""
    n, m = a.shape[1] - len(g) + 1, a.shape[2] - len(g) + 1
    rows = a[:, :n] * g[0]
    for k in range(1, len(g)):
        rows += a[:, k : k + n] * g[k]
    out = rows[:, :, :m] * g[0]
    for k in range(1, len(g)):
        out += rows[:, :, k : k + m] * g[k]
    return out


def ssim(reference: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """Per-image SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 .01, K2 .03, data range 1), in
    float32 (within 1e-7 of float64 on CIFAR-10) and in small chunks, which is what makes it quick."""
    c1, c2 = 0.01**2, 0.03**2
    radius = 5
    g = np.exp(-(np.arange(-radius, radius + 1) ** 2) / (2 * 1.5**2))
    g = (g / g.sum()).astype(np.float32)
    means = []
    for start in range(0, len(reference), _SSIM_CHUNK):
        x = reference[start : start + _SSIM_CHUNK].astype(np.float32)
        y = estimate[start : start + _SSIM_CHUNK].astype(np.float32)
        mx, my = _blur(x, g), _blur(y, g)
        vx, vy, cov = _blur(x * x, g) - mx * mx, _blur(y * y, g) - my * my, _blur(x * y, g) - mx * my
        s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        means.append(s.reshape(len(s), -1).mean(axis=1, dtype=np.float64))
    return np.concatenate(means) if means else np.zeros(0)


def reconstruction_metrics(session: ort.InferenceSession, clean: np.ndarray, given: np.ndarray) -> dict[str, float]:
    """MSE, PSNR and SSIM of the model's output on `given` against `clean` (both uint8 NHWC)."""
    reference = clean.astype(np.float32) / 255.0
    output = run_batched(session, given, OUTPUT_RECONSTRUCTION)
    mse = ((reference - output) ** 2).reshape(len(reference), -1).mean(axis=1)
    return {
        "mse": float(mse.mean()),
        "psnr": float(psnr(reference, output).mean()),
        "psnr_of_mean_mse": float(10 * np.log10(1.0 / mse.mean())),
        "ssim": float(ssim(reference, output).mean()),
    }


def input_metrics(clean: np.ndarray, given: np.ndarray) -> dict[str, float]:
    """The same metrics for the degraded input itself: the baseline a denoiser must beat."""
    reference, degraded = clean.astype(np.float32) / 255.0, given.astype(np.float32) / 255.0
    return {"psnr": float(psnr(reference, degraded).mean()), "ssim": float(ssim(reference, degraded).mean())}


def task_metrics(
    session: ort.InferenceSession,
    task: str,
    x: np.ndarray,
    y: np.ndarray,
    labels: list[str],
    sigmas: tuple[float, ...],
    seed: int,
) -> tuple[dict[str, float], ClassifierQuality | None]:
    """The metrics model.json records for `task`, on test images `x` (uint8 NHWC)."""
    if task == "classify":
        result = classifier_quality(session, x, y, labels)
        return {"accuracy": result.accuracy}, result
    if task == "reconstruct":
        return reconstruction_metrics(session, x, x), None
    metrics: dict[str, float] = {}
    for sigma in sigmas:
        noisy = add_noise(x, sigma, seed=seed)
        for key, value in reconstruction_metrics(session, x, noisy).items():
            metrics[f"{key}@sigma={sigma:g}"] = value
        for key, value in input_metrics(x, noisy).items():
            metrics[f"noisy_input_{key}@sigma={sigma:g}"] = value
    return metrics, None


def reconstruction_errors(session: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    return run_batched(session, x, OUTPUT_ERROR)


def anomaly_threshold(
    calibration_errors: np.ndarray, test_errors: np.ndarray, percentile: float, split: str
) -> AnomalyThreshold:
    """The `percentile` of held-out in-distribution errors; its false-positive rate is measured on the test set."""
    value = float(np.percentile(calibration_errors, percentile))
    return AnomalyThreshold(
        percentile=percentile,
        value=value,
        false_positive_rate=float((test_errors > value).mean()),
        calibration_samples=len(calibration_errors),
        calibration_split=split,
    )
