"""Inputs for the payload-log tests: images the tiny classifier predicts as every one of its classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.service.models import CLASSIFIER, LABELS, SIZE, reference_session


def varied_images(repository: Path, count: int, pool: int = 400) -> np.ndarray:
    """8x8 images the tiny classifier predicts as each of its classes in turn (random pixels at random density:
    plain noise would all land in one class), no two alike, so logs of them hold every class."""
    rng = np.random.default_rng(0)
    shape = (pool, SIZE, SIZE, 1)
    density = rng.random((pool, 1, 1, 1)) ** 2  # sparse images are the ones it calls zero
    images = (rng.integers(0, 256, shape) * (rng.random(shape) < density)).astype(np.uint8)
    _, first = np.unique(images.reshape(pool, -1), axis=0, return_index=True)
    images = images[np.sort(first)]  # no two alike (blank ones repeat), so each is known by its bytes
    (probabilities,) = reference_session(repository, CLASSIFIER).run(None, {"image": images})
    by_class = [images[probabilities.argmax(axis=1) == c] for c in range(len(LABELS))]
    if -(-count // len(LABELS)) > min(len(c) for c in by_class):
        raise ValueError(f"a pool of {pool} has too few images of some class for {count}; use a bigger pool")
    return np.stack([by_class[i % len(LABELS)][i // len(LABELS)] for i in range(count)])
