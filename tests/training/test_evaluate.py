"""The image-quality metrics model.json records (training/evaluate.py), against their textbook definitions."""

from __future__ import annotations

import numpy as np

from pixelserve.training import evaluate


def textbook_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al. 2004 for one HWC image, window by window in float64: the mean over every valid 11x11 window
    (Gaussian, sigma 1.5) and channel."""
    g = np.exp(-(np.arange(-5, 6) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for c in range(x.shape[2]):
        for i in range(x.shape[0] - 10):
            for j in range(x.shape[1] - 10):
                a, b = x[i : i + 11, j : j + 11, c], y[i : i + 11, j : j + 11, c]
                mx, my = (w * a).sum(), (w * b).sum()
                vx, vy, cov = (w * a * a).sum() - mx**2, (w * b * b).sum() - my**2, (w * a * b).sum() - mx * my
                values.append(((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def test_ssim_matches_the_windowed_definition_on_noisy_images() -> None:
    rng = np.random.default_rng(3)
    clean = rng.random((20, 24, 20, 3)).astype(np.float32)
    noisy = np.clip(clean + rng.normal(0, 0.2, clean.shape), 0, 1).astype(np.float32)
    fast = evaluate.ssim(clean, noisy)
    assert fast.shape == (20,)
    for k in (0, 7, 19):  # first chunk, inside one, the last partial one
        assert abs(fast[k] - textbook_ssim(clean[k].astype(np.float64), noisy[k].astype(np.float64))) < 1e-5


def test_ssim_of_an_image_with_itself_is_one_and_falls_with_noise() -> None:
    rng = np.random.default_rng(4)
    clean = rng.random((4, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(evaluate.ssim(clean, clean), 1.0, atol=1e-6)
    slightly = np.clip(clean + rng.normal(0, 0.05, clean.shape), 0, 1).astype(np.float32)
    very = np.clip(clean + rng.normal(0, 0.3, clean.shape), 0, 1).astype(np.float32)
    assert np.all(evaluate.ssim(clean, very) < evaluate.ssim(clean, slightly))
