"""A classifier on real-world variants of its test split: scans, printed digits, phone photos.

Each variant (pixelserve.training.variants) is made in code from the real test split, encoded as a client
would upload it, and prepared exactly as the server prepares it (pixelserve.imaging with the preprocessing
model.json declares), then scored with onnxruntime on the exported graph. Recorded in model.json
(quality.variants) at export; `pixelserve evaluate --variants` measures it again, also without the declared
preprocessing, so the gain shows.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from pixelserve import imaging
from pixelserve.modelspec import OUTPUT_PROBABILITIES, Preprocessing

from . import evaluate, variants
from .data import Dataset

COUNT = 1000  # images per variant
SEED = 0
MAX_PIXELS = 4096 * 4096


def variant_sets(data: Dataset, count: int = COUNT, seed: int = SEED) -> list[variants.Variant]:
    """The variants that fit the dataset: digits on paper and printed for MNIST, photos for CIFAR-10."""
    x, y = data.x_test, data.y_test
    if data.name == "mnist":
        sets = [variants.plain("plain-png", x, y, count, seed)]
        sets += [make(x, y, count, seed) for make in variants.MNIST_VARIANTS.values()]
        if variants.font_files():
            sets.append(variants.printed_digits(seed=seed))
        return sets
    if data.name == "cifar10":
        sets = [variants.plain("plain-jpeg", x, y, count, seed, jpeg_quality=90)]
        return sets + [make(x, y, count, seed) for make in variants.CIFAR_VARIANTS.values()]
    return []


def prepared_batch(files: list[bytes], pre: Preprocessing, resize: str, normalize: str) -> np.ndarray:
    return np.stack(
        [
            imaging.prepare(data, color_mode=pre.color_mode, height=pre.height, width=pre.width, resize=resize,
                            normalize=normalize, max_pixels=MAX_PIXELS)  # type: ignore[arg-type]
            for data in files
        ]
    )  # fmt: skip


def variant_accuracies(
    session: ort.InferenceSession, pre: Preprocessing, data: Dataset, *, declared: bool = True
) -> dict[str, float]:
    """Accuracy per variant, through the declared preprocessing (or, with declared=False, a plain stretch)."""
    resize, normalize = (pre.resize, pre.normalize) if declared else ("stretch", "none")
    out = {}
    for variant in variant_sets(data):
        batch = prepared_batch(variant.images, pre, resize, normalize)
        predicted = evaluate.run_batched(session, batch, OUTPUT_PROBABILITIES).argmax(axis=1)
        out[variant.name] = round(float((predicted == variant.labels).mean()), 4)
    return out
