"""Detection metrics against hand-computed values (ties included), threshold modes that keep their promise, and
foreign sets that are deterministic, at the model's input shape and drawn from the test splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixelserve.measured import Detection, OodReport
from pixelserve.modelspec import SPEC_FILE, ModelSpec
from pixelserve.training import detection as det
from pixelserve.training import variants
from pixelserve.training.data import load_dataset
from tests.training.conftest import latest

REPOSITORY = Path(__file__).resolve().parents[2] / "models"


# ---- metrics -----------------------------------------------------------------------------------------------


def test_auroc_counts_ties_as_half() -> None:
    # pairs (pos > neg) + half the ties: 2 -> 1 + 0.5, 3 -> 2 + 0.5, 4 -> 3: 7 of 9
    assert det.auroc([1, 2, 3], [2, 3, 4]) == pytest.approx(7 / 9)
    assert det.auroc([0.1, 0.4], [0.35, 0.8]) == pytest.approx(0.75)
    assert det.auroc([1, 1], [1, 1, 1]) == pytest.approx(0.5)
    assert det.auroc([1, 2], [3, 4]) == 1.0 and det.auroc([3, 4], [1, 2]) == 0.0


def test_auroc_equals_the_pairwise_definition_on_random_tied_scores() -> None:
    rng = np.random.default_rng(5)
    neg, pos = rng.integers(0, 6, 40).astype(float), rng.integers(2, 9, 30).astype(float)
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert det.auroc(neg, pos) == pytest.approx(pairs, abs=1e-12)


def test_average_precision_steps_over_distinct_thresholds() -> None:
    # thresholds 4, 3, 2, 1: precision 1, 2/3, 3/5, 3/6 at recall 1/3, 2/3, 1, 1 -> (1 + 2/3 + 3/5) / 3
    assert det.average_precision([1, 2, 3], [2, 3, 4]) == pytest.approx(34 / 45)
    # scikit-learn's example: y = 0 0 1 1, scores 0.1 0.4 0.35 0.8 -> 0.8333
    assert det.average_precision([0.1, 0.4], [0.35, 0.8]) == pytest.approx(5 / 6)
    # one tied group: precision is the positives' share at the only threshold
    assert det.average_precision([1, 1, 1], [1]) == pytest.approx(0.25)
    # a perfect ranking is exactly 1 (Detection refuses anything above 1)
    assert det.average_precision(np.zeros(5), np.linspace(1.0, 2.0, 1000)) == 1.0


def test_fpr_at_95_tpr() -> None:
    neg = np.arange(10.0)  # 0..9
    # 19 of 20 positives at 100: flagging >= 100 reaches 95% with no false positive
    assert det.fpr_at_tpr(neg, [100.0] * 19 + [5.0]) == 0.0
    # 18 at 100, 2 at 5.5: 95% needs >= 5.5, which flags 6, 7, 8, 9
    assert det.fpr_at_tpr(neg, [100.0] * 18 + [5.5] * 2) == pytest.approx(0.4)
    # positives below every negative: 95% TPR flags everything
    assert det.fpr_at_tpr(neg, [-1.0] * 20) == 1.0


def test_f1_and_flag_rate_flag_strictly_above_the_threshold() -> None:
    neg, pos = np.array([0.1, 0.2, 0.5]), np.array([0.5, 0.6, 0.7, 0.05])
    # > 0.5: tp 2 (0.6, 0.7), fp 0, fn 2 -> 4 / 6
    assert det.f1_at(neg, pos, 0.5) == pytest.approx(4 / 6)
    # > 0.15: tp 3, fp 2 (0.2, 0.5), fn 1 -> 6 / 9
    assert det.f1_at(neg, pos, 0.15) == pytest.approx(6 / 9)
    assert det.f1_at(neg, pos, 1.0) == 0.0
    assert det.flag_rate(np.array([0.1, 0.2, 0.5, 0.5]), 0.2) == 0.5


def test_detection_pools_the_foreign_sets_and_keeps_each_sets_auroc() -> None:
    normal = np.array([1.0, 2.0, 3.0])
    foreign = {"far": np.array([10.0, 11.0]), "near": np.array([2.0, 3.0, 4.0])}
    result = det.detection(normal, foreign, threshold=3.0, normal="toy (3)")
    assert isinstance(result, Detection)
    assert result.foreign == {"far": 2, "near": 3}
    assert result.per_set_auroc == pytest.approx({"far": 1.0, "near": 7 / 9})
    pooled = np.array([10.0, 11.0, 2.0, 3.0, 4.0])
    assert result.auroc == pytest.approx(det.auroc(normal, pooled))
    assert result.aupr == pytest.approx(det.average_precision(normal, pooled))
    # > 3: 10, 11, 4 of 5 foreign, no normal: F1 = 6 / 8
    assert result.f1 == pytest.approx(6 / 8)
    # 95% of 5 positives needs all five, down to 2: flags normal 2 and 3
    assert result.fpr_at_95_tpr == pytest.approx(2 / 3)
    assert det.detection(normal, foreign, threshold=None, normal="toy").f1 is None
    with pytest.raises(ValueError):
        det.detection(normal, {"nan": np.array([np.nan])}, threshold=None, normal="toy")


# ---- thresholds --------------------------------------------------------------------------------------------


def test_percentile_mode_is_the_percentile_of_normal_errors() -> None:
    errors = np.random.default_rng(0).gamma(2.0, 1.0, 999)
    value, at = det.choose_threshold("percentile", errors, percentile=99.0)
    assert value == pytest.approx(np.percentile(errors, 99.0)) and at == 99.0


@pytest.mark.parametrize(("n", "target"), [(37, 0.1), (1000, 0.05), (1000, 0.001), (20, 0.5), (101, 0.013)])
def test_fpr_mode_gives_the_target_false_positive_rate_within_one_sample(n: int, target: float) -> None:
    errors = np.random.default_rng(n).gamma(2.0, 1.0, n)
    value, at = det.choose_threshold("fpr", errors, target_fpr=target)
    fpr = det.flag_rate(errors, value)
    assert abs(fpr - target) < 1.0 / n and fpr <= target
    assert at == pytest.approx(100.0 * (1.0 - fpr))
    assert value in errors  # a real error, so the rate holds exactly on these errors


def test_fpr_mode_refuses_a_target_below_one_sample() -> None:
    with pytest.raises(ValueError, match="below one"):
        det.choose_threshold("fpr", np.arange(10.0), target_fpr=0.05)
    with pytest.raises(ValueError):
        det.choose_threshold("fpr", np.arange(10.0))


def test_f1_mode_is_optimal_on_a_small_labelled_set() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.45, 0.05])
    anomaly = np.array([0, 0, 1, 0, 1, 1, 0, 0], dtype=bool)
    # > 0.2 flags 0.3, 0.4, 0.45, 0.5, 0.6: tp 3, fp 2 -> 6/8; > 0.45 flags 0.5, 0.6: tp 2, fn 1 -> 4/5 (best);
    # > 0.4 adds 0.45 (fp): 4/6
    normal = np.linspace(0.0, 1.0, 101)
    value, at = det.choose_threshold("f1", normal, labelled=(scores, anomaly))
    assert value == pytest.approx(0.45)
    assert at == pytest.approx(100.0 * (normal <= 0.45).mean())
    best = det.f1_at(scores[~anomaly], scores[anomaly], value)
    assert best == pytest.approx(4 / 5)
    edges = np.sort(scores)
    candidates = np.r_[edges[0] - 1, (edges[1:] + edges[:-1]) / 2, edges, edges[-1] + 1]
    assert all(det.f1_at(scores[~anomaly], scores[anomaly], t) <= best + 1e-12 for t in candidates)


def test_f1_mode_can_flag_everything_when_that_is_best() -> None:
    scores, anomaly = np.array([0.3, 0.1, 0.2]), np.array([True, True, True])
    value, _ = det.choose_threshold("f1", np.array([0.5]), labelled=(scores, anomaly))
    assert det.flag_rate(scores, value) == 1.0
    # a tie (flag 4 alone: 2/3; flag all four: 4/6) goes to the higher threshold, which flags less
    value, _ = det.choose_threshold("f1", np.array([0.5]), labelled=(np.array([4.0, 3, 2, 1]), np.array([1, 0, 0, 1])))
    assert value == 3.0


# ---- foreign sets ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dataset", "shape", "real"), [("mnist", (28, 28, 1), "cifar10-grey"), ("cifar10", (32, 32, 3), "mnist-rgb")]
)
def test_foreign_sets_are_deterministic_at_the_models_shape(
    tiny_data_dir: Path, dataset: str, shape: tuple[int, int, int], real: str
) -> None:
    sets = det.foreign_sets(dataset, tiny_data_dir, shape, count=10, seed=3)
    assert list(sets) == [real, "noise", "blank"]
    for x in sets.values():
        assert x.dtype == np.uint8 and x.shape == (10, *shape)
    again = det.foreign_sets(dataset, tiny_data_dir, shape, count=10, seed=3)
    assert all(np.array_equal(sets[k], again[k]) for k in sets)
    other = det.foreign_sets(dataset, tiny_data_dir, shape, count=10, seed=4)
    assert not np.array_equal(sets["noise"], other["noise"]) and not np.array_equal(sets[real], other[real])
    blank = sets["blank"]
    assert (blank[:5] == 0).all() and (blank[5:] == 255).all()


def test_cifar10_grey_is_test_photos_in_grey_resized_with_pillow(tiny_data_dir: Path) -> None:
    photos = load_dataset("cifar10", tiny_data_dir).x_test
    grey = det.foreign_sets("mnist", tiny_data_dir, (28, 28, 1), count=8, seed=0)["cifar10-grey"]
    expected = np.stack(
        [np.asarray(Image.fromarray(p).convert("L").resize((28, 28), Image.Resampling.BILINEAR)) for p in photos]
    )
    for image in grey:
        assert any(np.array_equal(image[..., 0], e) for e in expected)
    assert len({image.tobytes() for image in grey}) == 8  # distinct photos


def test_mnist_rgb_is_test_digits_padded_and_replicated(tiny_data_dir: Path) -> None:
    digits = load_dataset("mnist", tiny_data_dir).x_test[..., 0]
    rgb = det.foreign_sets("cifar10", tiny_data_dir, (32, 32, 3), count=8, seed=0)["mnist-rgb"]
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 0] == rgb[..., 2]).all()
    border = np.ones((32, 32), dtype=bool)
    border[2:30, 2:30] = False
    assert (rgb[:, border] == 0).all()
    for image in rgb:
        assert any(np.array_equal(image[2:30, 2:30, 0], d) for d in digits)


def test_foreign_sets_refuse_unknown_datasets_and_shrink_to_the_foreign_test_split(tiny_data_dir: Path) -> None:
    with pytest.raises(ValueError, match="no foreign sets"):
        det.foreign_sets("fashion_mnist", tiny_data_dir, (28, 28, 1), count=4, seed=0)
    sets = det.foreign_sets("mnist", tiny_data_dir, (28, 28, 1), count=10_000, seed=0)  # tiny CIFAR: 64 tests
    assert {name: len(x) for name, x in sets.items()} == {"cifar10-grey": 64, "noise": 64, "blank": 64}


# ---- end to end on the committed models (tiny data, so it checks the plumbing, not the numbers) -------------


def test_ood_report_and_anomaly_detection_on_the_committed_mnist_pairing(
    tiny_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # without fonts the variants skip the printed digits (some 660 renders, most of this test's time)
    monkeypatch.setattr(variants, "font_files", lambda: [])
    classifier, autoencoder = latest(REPOSITORY / "mnist-classifier"), latest(REPOSITORY / "mnist-autoencoder")
    report = det.ood_report(classifier, autoencoder, tiny_data_dir, count=12, seed=0)
    assert isinstance(report, OodReport) and report.scorer == "mnist-autoencoder/1"
    assert report.threshold == ModelSpec.load(autoencoder / SPEC_FILE).anomaly.value
    assert report.detection.foreign == {"cifar10-grey": 12, "noise": 12, "blank": 12}
    assert report.detection.normal == "mnist test split (64)"
    assert {"test", "plain-png", "paper", "grey-paper-jpeg"} <= set(report.flag_rates)
    # an MNIST autoencoder reconstructs an all-black image perfectly, but the served rule (pixelserve.anomaly)
    # scores content-less images at the largest error: every blank image is flagged
    assert report.detection.per_set_auroc["blank"] == pytest.approx(1.0)

    anomaly = det.anomaly_detection(autoencoder, tiny_data_dir, count=12, seed=0)
    assert anomaly.foreign == report.detection.foreign and anomaly.f1 == report.detection.f1

    uploaded = det.anomaly_detection(autoencoder, tiny_data_dir, count=12, seed=0, uploaded=True)
    assert set(uploaded.foreign) == {"cifar10-grey-png", "noise-png", "blank-png"}
