"""The golden set an export writes beside its model (format: pixelserve.golden).

Real inputs as a client sends them: plain test images as PNG, plus real-world variants (scans, printed digits,
phone photos) for classifiers and noisy test images for denoisers, so a check exercises the declared
preprocessing too. The expected outputs come from the exported graph on the inputs prepared exactly as the
server prepares them. At most MAX_SAMPLES images, fewer where the file would pass MAX_BYTES.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from pixelserve import golden
from pixelserve.measured import GOLDEN_FILE, GoldenSet, GoldenTolerance
from pixelserve.modelspec import OUTPUT_ERROR, OUTPUT_PROBABILITIES, OUTPUT_RECONSTRUCTION, ModelSpec

from . import evaluate, variants
from .data import Dataset
from .robustness import prepared_batch

MAX_SAMPLES = 256
MAX_BYTES = 300 * 1024
VARIANT_SHARE = 0.25  # of a classifier's golden images: real-world variants
# Same session, same CPU: outputs agree to float rounding; other CPUs and GPUs differ in their kernels.
TOLERANCE = GoldenTolerance(max_abs_diff=1e-4, max_abs_diff_gpu=2e-3, top1_agreement=1.0, psnr_delta_db=0.05)


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(buffer, format="PNG")
    return buffer.getvalue()


Inputs = tuple[list[bytes], list[str], np.ndarray | None]


def _inputs(spec: ModelSpec, data: Dataset, count: int, sigma: float, seed: int) -> Inputs:
    """(files, kinds, clean references for denoisers). Classifiers and autoencoders get real-world variants
    beside plain test images, so their declared preprocessing is part of what the set checks."""
    rng = np.random.default_rng(seed)
    if spec.task != "denoise":
        extra = [v for v in _variant_sets(data, seed) if v.name not in ("plain-png", "plain-jpeg")]
        share = int(count * VARIANT_SHARE) // max(1, len(extra)) if extra else 0
        rows = rng.choice(len(data.x_test), size=min(count - share * len(extra), len(data.x_test)), replace=False)
        files, kinds = [_png(data.x_test[i]) for i in rows], ["test"] * len(rows)
        for variant in extra:
            files += variant.images[:share]
            kinds += [variant.name] * min(share, len(variant))
        return files, kinds, None
    clean = data.x_test[rng.choice(len(data.x_test), size=count, replace=False)]
    noisy = evaluate.add_noise(clean, sigma, seed=seed)
    return [_png(x) for x in noisy], ["noisy-test"] * count, clean


def _variant_sets(data: Dataset, seed: int) -> list[variants.Variant]:
    from .robustness import variant_sets

    return variant_sets(data, count=MAX_SAMPLES, seed=seed)


def _expected(spec: ModelSpec, session: ort.InferenceSession, files: list[bytes], reference: np.ndarray | None) -> dict:
    pre = spec.preprocessing
    batch = prepared_batch(files, pre, pre.resize, pre.normalize)
    if spec.task == "classify":
        return {"probabilities": evaluate.run_batched(session, batch, OUTPUT_PROBABILITIES).astype(np.float32)}
    reconstruction = evaluate.run_batched(session, batch, OUTPUT_RECONSTRUCTION)
    target = batch if reference is None else reference  # an autoencoder reconstructs what it saw
    return {
        "reconstruction_error": evaluate.run_batched(session, batch, OUTPUT_ERROR).astype(np.float32),
        "reconstruction": np.rint(np.clip(reconstruction, 0, 1) * 255).astype(np.uint8),
        "psnr": golden.psnr(target, reconstruction).astype(np.float32),
        "reference": target.astype(np.uint8),
    }


def write_golden_set(
    spec: ModelSpec, session: ort.InferenceSession, data: Dataset, out_dir: Path, *, sigma: float = 0.0, seed: int = 0
) -> GoldenSet:
    """The golden file in `out_dir` and its model.json entry; halves the count until the file fits MAX_BYTES."""
    count = min(MAX_SAMPLES, len(data.x_test))  # a small dataset (tests, a user's folder) gives what it has
    while True:
        files, kinds, reference = _inputs(spec, data, count, sigma, seed)
        path = out_dir / GOLDEN_FILE
        sha = golden.save(path, golden.GoldenData(files, kinds, _expected(spec, session, files, reference)))
        if path.stat().st_size <= MAX_BYTES or count <= 16:
            return GoldenSet(
                samples=len(files),
                sha256=sha,
                kinds={kind: kinds.count(kind) for kind in dict.fromkeys(kinds)},
                tolerance=TOLERANCE,
            )
        count //= 2
