"""How well a score separates normal inputs from foreign ones: the out-of-distribution flag of a classifier's
paired autoencoder and an autoencoder's own anomaly threshold.

The score is a reconstruction error (higher: more foreign); foreign inputs are the positives. The metrics are
threshold-free (AUROC, AUPR, FPR at 95% TPR) plus F1 at the deployed threshold, which flags a score strictly
above it, as the server does (``error > anomaly.value``). Foreign sets are built in code from the real data
directory, so the measurement needs nothing beyond what training already has. They are fed as tensors, which
the server passes through untouched; with ``uploaded=True`` they are sent as PNG files instead and prepared as
the server prepares uploads, declared digit normalisation included, which can turn them into something else
entirely (noise and blank pages become an empty frame). numpy, Pillow, onnxruntime.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort
from PIL import Image

from pixelserve import anomaly
from pixelserve.measured import Detection, OodReport
from pixelserve.modelspec import MODEL_FILE, SPEC_FILE, ModelSpec, Preprocessing

from . import evaluate, robustness
from .data import Dataset, load_dataset

FOREIGN_COUNT = 1000  # images per foreign set
SEED = 0
TPR_TARGET = 0.95
ThresholdMode = Literal["percentile", "fpr", "f1"]


# ---- metrics -----------------------------------------------------------------------------------------------


def _scores(values: np.ndarray, what: str) -> np.ndarray:
    scores = np.asarray(values, dtype=np.float64).reshape(-1)
    if len(scores) == 0 or not np.isfinite(scores).all():
        raise ValueError(f"{what} must be a non-empty array of finite scores")
    return scores


def auroc(negatives: np.ndarray, positives: np.ndarray) -> float:
    """P(positive score > negative score) + P(equal) / 2: the Mann-Whitney U statistic with average ranks."""
    neg, pos = _scores(negatives, "negatives"), _scores(positives, "positives")
    _, inverse, counts = np.unique(np.concatenate([neg, pos]), return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]  # 1-based, ties share their mean rank
    u = ranks[len(neg) :].sum() - len(pos) * (len(pos) + 1) / 2.0
    return float(u / (len(pos) * len(neg)))


def _curve(negatives: np.ndarray, positives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(true positives, false positives) when flagging scores >= each distinct score, highest first."""
    neg, pos = _scores(negatives, "negatives"), _scores(positives, "positives")
    scores = np.concatenate([pos, neg])
    is_pos = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    order = np.argsort(-scores, kind="stable")
    scores, is_pos = scores[order], is_pos[order]
    last_of_value = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]  # ties form one step
    tp = np.cumsum(is_pos)[last_of_value]
    return tp, (last_of_value + 1) - tp


def average_precision(negatives: np.ndarray, positives: np.ndarray) -> float:
    """Area under the precision-recall curve as the step sum of precision times the recall gained at each
    distinct threshold (no interpolation; scikit-learn's definition)."""
    tp, fp = _curve(negatives, positives)
    gained = np.diff(np.r_[0.0, tp])  # positives gained at each threshold: whole numbers, summed before dividing
    return min(1.0, float((gained * tp / (tp + fp)).sum() / tp[-1]))  # so a perfect ranking gives 1, not 1 + 1e-16


def fpr_at_tpr(negatives: np.ndarray, positives: np.ndarray, tpr: float = TPR_TARGET) -> float:
    """The false-positive rate at the highest threshold that flags at least `tpr` of the positives."""
    tp, fp = _curve(negatives, positives)
    reached = np.flatnonzero(tp >= tpr * tp[-1] - 1e-9)[0]
    return float(fp[reached] / fp[-1])


def f1_at(negatives: np.ndarray, positives: np.ndarray, threshold: float) -> float:
    """F1 when scores strictly above `threshold` are flagged (0 when nothing is flagged correctly)."""
    neg, pos = _scores(negatives, "negatives"), _scores(positives, "positives")
    tp, fp = int((pos > threshold).sum()), int((neg > threshold).sum())
    return 2.0 * tp / (2.0 * tp + fp + (len(pos) - tp))


def flag_rate(scores: np.ndarray, threshold: float) -> float:
    """The share of scores strictly above the threshold: what the server flags."""
    return float((_scores(scores, "scores") > threshold).mean())


def detection(
    normal_scores: np.ndarray, foreign: dict[str, np.ndarray], *, threshold: float | None, normal: str
) -> Detection:
    """Normal inputs against every foreign set pooled (the positives), plus each set's own AUROC."""
    if not foreign:
        raise ValueError("detection needs at least one foreign set")
    normal_scores = _scores(normal_scores, "normal scores")
    pooled = np.concatenate([_scores(v, f"foreign set {k!r}") for k, v in foreign.items()])
    return Detection(
        auroc=auroc(normal_scores, pooled),
        aupr=average_precision(normal_scores, pooled),
        fpr_at_95_tpr=fpr_at_tpr(normal_scores, pooled),
        f1=None if threshold is None else f1_at(normal_scores, pooled, threshold),
        normal=normal,
        foreign={name: len(scores) for name, scores in foreign.items()},
        per_set_auroc={name: auroc(normal_scores, scores) for name, scores in foreign.items()},
    )


# ---- thresholds --------------------------------------------------------------------------------------------


def choose_threshold(
    mode: ThresholdMode,
    normal_errors: np.ndarray,
    *,
    percentile: float = 99.0,
    target_fpr: float | None = None,
    labelled: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[float, float]:
    """The anomaly threshold by `mode`, and the percentile of the normal errors it sits at (the share at or
    below it, in percent; `percentile` itself in that mode).

    - percentile: that percentile of the normal held-out errors (linear interpolation, np.percentile).
    - fpr: the normal error above which floor(target_fpr * n) normal errors lie: the false-positive rate on
      them is at most target_fpr and within one sample (1/n) of it, barring ties.
    - f1: the score maximising F1 on `labelled` = (scores, is_anomaly); the highest such score on a tie.
    """
    errors = _scores(normal_errors, "normal errors")
    if mode == "percentile":
        if not 0 < percentile < 100:
            raise ValueError(f"percentile must lie in (0, 100), got {percentile}")
        return float(np.percentile(errors, percentile)), float(percentile)
    if mode == "fpr":
        value = _fpr_threshold(errors, target_fpr)
    elif mode == "f1":
        if labelled is None:
            raise ValueError("the f1 mode needs labelled=(scores, is_anomaly)")
        value = _f1_threshold(*labelled)
    else:
        raise ValueError(f"unknown threshold mode {mode!r}; expected percentile, fpr or f1")
    return value, float(100.0 * (errors <= value).mean())


def _fpr_threshold(errors: np.ndarray, target_fpr: float | None) -> float:
    if target_fpr is None or not 0 < target_fpr < 1:
        raise ValueError(f"the fpr mode needs target_fpr in (0, 1), got {target_fpr}")
    flagged = min(int(np.floor(target_fpr * len(errors) + 1e-9)), len(errors) - 1)
    if flagged < 1:
        raise ValueError(f"target_fpr {target_fpr} is below one in {len(errors)} normal errors")
    return float(np.sort(errors)[len(errors) - flagged - 1])


def _f1_threshold(scores: np.ndarray, is_anomaly: np.ndarray) -> float:
    """Every distinct score is a candidate (flag what lies strictly above it), and one just below the lowest
    (flag everything); counts come from two sorted arrays, so large sets cost O(n log n)."""
    scores = _scores(scores, "labelled scores")
    positive = np.asarray(is_anomaly, dtype=bool).reshape(-1)
    if len(positive) != len(scores) or not positive.any():
        raise ValueError("labelled needs one is_anomaly flag per score and at least one anomaly")
    candidates = np.r_[np.nextafter(scores.min(), -np.inf), np.unique(scores)]
    every, anomalies = np.sort(scores), np.sort(scores[positive])
    flagged = len(every) - np.searchsorted(every, candidates, side="right")
    tp = len(anomalies) - np.searchsorted(anomalies, candidates, side="right")
    f1 = 2.0 * tp / (flagged + len(anomalies))
    return float(candidates[np.flatnonzero(f1 == f1.max())[-1]])


# ---- foreign sets ------------------------------------------------------------------------------------------


def foreign_sets(
    for_dataset: str, data_dir: Path, shape: tuple[int, int, int], count: int = FOREIGN_COUNT, seed: int = SEED
) -> dict[str, np.ndarray]:
    """Inputs a model of `for_dataset` should call foreign, uint8 (count, H, W, C) at its input shape.

    MNIST models: CIFAR-10 test photos in grey ("cifar10-grey"); CIFAR-10 models: MNIST test digits padded and
    in RGB ("mnist-rgb"); both: uniform noise and blank images (half all black, half all white). Each set
    draws from its own seeded stream, so the same arguments give the same pixels.
    """
    height, width, channels = shape
    other = {"mnist": "cifar10", "cifar10": "mnist"}.get(for_dataset)
    if other is None:
        raise ValueError(f"no foreign sets for {for_dataset!r}; expected mnist or cifar10")
    foreign = load_dataset(other, data_dir)
    count = min(count, len(foreign.x_test))  # every set as large as the foreign test split allows
    if other == "cifar10":
        real = {"cifar10-grey": _cifar_grey(foreign, shape, count, _rng(seed, 0))}
    else:
        real = {"mnist-rgb": _mnist_rgb(foreign, shape, count, _rng(seed, 0))}
    noise = _rng(seed, 1).integers(0, 256, (count, height, width, channels), dtype=np.uint8)
    blank = np.zeros((count, height, width, channels), dtype=np.uint8)
    blank[count // 2 :] = 255
    return {**real, "noise": noise, "blank": blank}


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])


def _pick(x: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    if not 0 < count <= len(x):
        raise ValueError(f"count must lie in 1..{len(x)}, got {count}")
    return x[np.sort(rng.choice(len(x), count, replace=False))]


def _cifar_grey(cifar: Dataset, shape: tuple[int, int, int], count: int, rng: np.random.Generator) -> np.ndarray:
    """CIFAR-10 test photos in grey (ITU-R 601-2 luma, Pillow's 'L'), resized with Pillow's bilinear filter."""
    height, width, channels = shape
    out = np.empty((count, height, width, channels), dtype=np.uint8)
    for i, rgb in enumerate(_pick(cifar.x_test, count, rng)):
        grey = Image.fromarray(rgb.squeeze()).convert("L").resize((width, height), Image.Resampling.BILINEAR)
        out[i] = np.asarray(grey, dtype=np.uint8)[..., None]
    return out


def _mnist_rgb(mnist: Dataset, shape: tuple[int, int, int], count: int, rng: np.random.Generator) -> np.ndarray:
    """MNIST test digits centred on a black canvas of the model's size, the grey copied to every channel."""
    height, width, channels = shape
    digits = _pick(mnist.x_test, count, rng)[..., :1]
    top, left = (height - digits.shape[1]) // 2, (width - digits.shape[2]) // 2
    if top < 0 or left < 0:
        raise ValueError(f"MNIST digits ({digits.shape[1]}x{digits.shape[2]}) do not fit in {height}x{width}")
    out = np.zeros((count, height, width, 1), dtype=np.uint8)
    out[:, top : top + digits.shape[1], left : left + digits.shape[2]] = digits
    return np.repeat(out, channels, axis=3)


# ---- end to end on exported models -------------------------------------------------------------------------


def _load(version_dir: Path) -> tuple[ModelSpec, ort.InferenceSession]:
    return ModelSpec.load(version_dir / SPEC_FILE), evaluate.cpu_session(version_dir / MODEL_FILE)


def _shape(pre: Preprocessing) -> tuple[int, int, int]:
    return pre.height, pre.width, pre.channels


def _threshold(spec: ModelSpec) -> float:
    if spec.anomaly is None:
        raise ValueError(f"{spec.name}/{spec.version} has no anomaly threshold in its model.json")
    return spec.anomaly.value


def _dataset(spec: ModelSpec, data_dir: Path) -> Dataset:
    if spec.quality is None:
        raise ValueError(f"{spec.name}/{spec.version}: model.json names no dataset (quality.dataset)")
    return load_dataset(spec.quality.dataset, data_dir)


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="PNG")
    return buffer.getvalue()


def _foreign_scores(
    session: ort.InferenceSession,
    data: Dataset,
    data_dir: Path,
    pre: Preprocessing,
    count: int,
    seed: int,
    *,
    uploaded: bool,
) -> dict[str, np.ndarray]:
    """Reconstruction errors per foreign set: sent as tensors (as built), or with `uploaded` as PNG files prepared
    as the server prepares uploads under `pre` (digit normalisation included), the names then ending in -png."""
    sets = foreign_sets(data.name, data_dir, _shape(pre), count, seed)
    if uploaded:
        sets = {
            f"{name}-png": robustness.prepared_batch([_png(i) for i in x], pre, pre.resize, pre.normalize)
            for name, x in sets.items()
        }
    return {name: served_errors(session, x) for name, x in sets.items()}


def served_errors(session: ort.InferenceSession, batch: np.ndarray) -> np.ndarray:
    """Reconstruction errors as the server's verdicts see them (pixelserve.anomaly: content-less inputs score
    the largest error)."""
    return anomaly.effective_errors(evaluate.reconstruction_errors(session, batch), batch)


def anomaly_detection(
    autoencoder_dir: Path, data_dir: Path, count: int = FOREIGN_COUNT, seed: int = SEED, *, uploaded: bool = False
) -> Detection:
    """The autoencoder's reconstruction error on its test split (normal) against the foreign sets (anomalies),
    F1 at the threshold its model.json declares."""
    spec, session = _load(autoencoder_dir)
    data = _dataset(spec, data_dir)
    normal = served_errors(session, data.x_test)
    scores = _foreign_scores(session, data, data_dir, spec.preprocessing, count, seed, uploaded=uploaded)
    return detection(normal, scores, threshold=_threshold(spec), normal=f"{data.name} test split ({len(normal)})")


def ood_report(
    classifier_dir: Path,
    autoencoder_dir: Path,
    data_dir: Path,
    count: int = FOREIGN_COUNT,
    seed: int = SEED,
    *,
    uploaded: bool = False,
) -> OodReport:
    """The paired autoencoder's error as the classifier's out-of-distribution flag: detection on the
    classifier's test split against the foreign sets, and the share flagged on the test split and on its
    real-world variants, prepared as the server prepares them for the classifier (the server feeds the
    autoencoder that same batch when the input shapes agree)."""
    spec = ModelSpec.load(classifier_dir / SPEC_FILE)
    scorer, session = _load(autoencoder_dir)
    if scorer.input.shape[1:] != spec.input.shape[1:]:
        raise ValueError(f"{scorer.name} takes {scorer.input.shape[1:]}, {spec.name} takes {spec.input.shape[1:]}")
    threshold, pre = _threshold(scorer), spec.preprocessing
    data = _dataset(spec, data_dir)
    normal = served_errors(session, data.x_test)
    scores = _foreign_scores(session, data, data_dir, pre, count, seed, uploaded=uploaded)
    rates = {"test": flag_rate(normal, threshold)}
    for variant in robustness.variant_sets(data):
        batch = robustness.prepared_batch(variant.images, pre, pre.resize, pre.normalize)
        rates[variant.name] = flag_rate(served_errors(session, batch), threshold)
    return OodReport(
        scorer=f"{scorer.name}/{scorer.version}",
        threshold=threshold,
        detection=detection(normal, scores, threshold=threshold, normal=f"{data.name} test split ({len(normal)})"),
        flag_rates=rates,
    )
