"""Temperature scaling: the metrics match hand-computed values, the fit finds the NLL minimum, and scaling fitted on
one split lowers the calibration error of an over-confident model on another (synthetic and real probabilities)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from pixelserve.measured import Calibration
from pixelserve.training import calibration
from pixelserve.training.calibration import ece, fit_temperature, nll, scale
from tests.training.conftest import latest

REPOSITORY = Path(__file__).resolve().parents[2] / "models"
REAL_SAMPLES = 2000  # test images run through the committed classifier: a few seconds on two shared cores


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def overconfident(n: int, sharpen: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z) (calibrated at T=1), reported as softmax(sharpen * z): over-confident."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, (n, 10))
    z[np.arange(n), rng.integers(0, 10, n)] += 3.0
    p = softmax(z)
    labels = np.array([rng.choice(10, p=row) for row in p])
    return softmax(sharpen * z).astype(np.float32), labels


def test_ece_and_nll_match_hand_computed_values() -> None:
    p = np.array([[0.9, 0.1], [0.75, 0.25], [0.35, 0.65], [0.3, 0.7]])
    y = np.array([0, 1, 1, 1])
    # top-1 confidences 0.9 (right), 0.75 (wrong), 0.65 and 0.7 (right). Two bins: all in (0.5, 1], accuracy
    # 3/4 against mean confidence 0.75 -> 0. Five bins: (0.8, 1] holds 0.9 (gap 0.1); (0.6, 0.8] the other
    # three, accuracy 2/3 against 0.7: (1 * 0.1 + 3 * 0.0333) / 4 = 0.05.
    assert ece(p, y, bins=2) == pytest.approx(0.0, abs=1e-12)
    assert ece(p, y, bins=5) == pytest.approx(0.05, abs=1e-12)
    assert ece(p, y, bins=1) == pytest.approx(0.0, abs=1e-12)
    # bins are (lo, hi]: a confidence of exactly 0.5 falls in (0, 0.5] (gap 0.5), 0.75 in (0.5, 1] (gap 0.75)
    edge = np.array([[0.5, 0.5], [0.75, 0.25]])
    assert ece(edge, np.array([0, 1]), bins=2) == pytest.approx((0.5 + 0.75) / 2)
    assert nll(p, y) == pytest.approx(-(math.log(0.9) + math.log(0.25) + math.log(0.65) + math.log(0.7)) / 4)
    # an exact zero on the true class is clipped, not an infinity
    assert math.isfinite(nll(np.array([[1.0, 0.0]], dtype=np.float32), np.array([1])))


def test_scale_with_t_one_is_the_identity_and_otherwise_the_renormalised_power() -> None:
    rng = np.random.default_rng(0)
    p = softmax(rng.normal(0, 2, (50, 10)))
    np.testing.assert_allclose(scale(p, 1.0), p, rtol=1e-12, atol=1e-15)
    for t in (0.5, 2.0, 7.0):
        powered = p ** (1.0 / t)
        np.testing.assert_allclose(scale(p, t), powered / powered.sum(axis=1, keepdims=True), rtol=1e-10)
        assert (scale(p, t).argmax(axis=1) == p.argmax(axis=1)).all()


def test_scale_is_finite_on_float32_probabilities_of_exactly_zero_and_one() -> None:
    p = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]], dtype=np.float32)
    for t in (0.05, 1.0, 1.5, 20.0):
        out = scale(p, t)
        assert np.isfinite(out).all() and np.allclose(out.sum(axis=1), 1.0)
        assert out[0, 0] > 0.95 and out[0, 1] == out[0, 2] and out[1, 0] == out[1, 1] > out[1, 2]
    # A zero stands for anything below float32's range: clipped at FLOOR it stays negligible unless T is extreme.
    assert scale(p, 1.5)[0, 0] == pytest.approx(1.0, abs=1e-20)
    with pytest.raises(ValueError):
        scale(p, 0.0)


def test_fit_temperature_finds_the_nll_minimum_of_a_dense_grid() -> None:
    p, y = overconfident(2000, 2.5, seed=1)
    fitted = fit_temperature(p, y)
    grid = np.exp(np.linspace(math.log(0.05), math.log(20.0), 801))
    losses = [nll(scale(p, t), y) for t in grid]
    best = grid[int(np.argmin(losses))]
    assert fitted == pytest.approx(best, rel=5e-3)  # half a grid step
    assert nll(scale(p, fitted), y) <= min(losses) + 1e-9


def test_calibration_lowers_the_ece_of_an_overconfident_model_on_a_held_out_split() -> None:
    val_p, val_y = overconfident(3000, 3.0, seed=2)
    test_p, test_y = overconfident(3000, 3.0, seed=3)
    result = calibration.calibrate(val_p, val_y, test_p, test_y, fitted_on="synthetic validation split")
    assert isinstance(result, Calibration) and result.fitted_on == "synthetic validation split"
    assert result.temperature == pytest.approx(3.0, rel=0.1)  # the sharpening undone
    assert result.before["ece"] > 0.1
    assert result.after["ece"] < result.before["ece"] / 4
    assert result.after["nll"] < result.before["nll"]
    assert result.before == calibration.metrics(test_p, test_y)
    assert result.after == calibration.metrics(scale(test_p, result.temperature), test_y)


@pytest.fixture(scope="module")
def mnist_probabilities(shared_datasets: Path) -> tuple[np.ndarray, np.ndarray]:
    """The committed MNIST classifier's probabilities on the first test images, with their labels."""
    from pixelserve.training import evaluate

    with np.load(shared_datasets / "mnist.npz") as data:
        x, y = data["x_test"][:REAL_SAMPLES, ..., None], data["y_test"][:REAL_SAMPLES].astype(np.int64)
    session = evaluate.cpu_session(latest(REPOSITORY / "mnist-classifier") / "model.onnx")
    return evaluate.run_batched(session, x, "probabilities"), y


def test_real_classifier_halves_fit_and_judge_consistently(mnist_probabilities) -> None:
    """The committed classifier is nearly calibrated already: T fitted on half the test images stays near 1 and
    does not raise the NLL of the other half. Scaling composes: its probabilities made over-confident (T=1/4, a
    model trained far past calibration) fit to four times that temperature, which brings the other half's NLL
    down and its ECE back to that of the unsharpened model scaled. (With about five errors per thousand images,
    the ECE of a half has a noise floor near 0.003: that is why the real model alone cannot show a reduction.)"""
    p, y = mnist_probabilities
    first, second = np.arange(0, len(y), 2), np.arange(1, len(y), 2)
    fitted = fit_temperature(p[first], y[first])
    assert 0.7 < fitted < 1.6
    assert nll(scale(p[second], fitted), y[second]) <= nll(p[second], y[second]) * 1.01

    sharp = scale(p, 0.25)
    sharp_fitted = fit_temperature(sharp[first], y[first])
    assert sharp_fitted == pytest.approx(4.0 * fitted, rel=1e-3)
    rescaled = scale(sharp[second], sharp_fitted)
    assert nll(rescaled, y[second]) < 0.5 * nll(sharp[second], y[second])
    assert ece(rescaled, y[second]) == pytest.approx(ece(scale(p[second], fitted), y[second]), abs=1e-5)


def test_lowers_ece_needs_a_reliable_gain_on_the_validation_split() -> None:
    """An over-confident model's temperature lowers the ECE in nearly every resample; a calibrated model's
    temperature only moves the ECE within its sampling noise, so export leaves it out of the graph."""
    sharp_p, sharp_y = overconfident(3000, 3.0, seed=4)
    assert calibration.lowers_ece(sharp_p, sharp_y, fit_temperature(sharp_p, sharp_y))
    calibrated_p, calibrated_y = overconfident(3000, 1.0, seed=5)
    assert not calibration.lowers_ece(calibrated_p, calibrated_y, 1.1)
    assert not calibration.lowers_ece(calibrated_p, calibrated_y, 0.9)
