"""The export's last steps: what makes a served model trustworthy, measured on the graph that will be served.

Called by `export_model` with the staged ONNX file and its model.json so far; returns the model.json to write.

Classifiers: temperature scaling fitted on the validation split (put in the graph only when it lowers the
validation split's calibration error in 95% of bootstrap resamples), accuracy on real-world variants, the OOD
report of a paired autoencoder already in the repository, the drift baseline and the golden set.
Autoencoders: the per-pixel anomaly map output, the anomaly threshold by the recipe's mode with its detection
metrics against foreign images, the drift baseline and the golden set.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np

from pixelserve import drift
from pixelserve.measured import Calibration, DriftBaseline
from pixelserve.modelspec import (
    MODEL_FILE,
    OUTPUT_ANOMALY_MAP,
    OUTPUT_PROBABILITIES,
    SPEC_FILE,
    AnomalyThreshold,
    ModelSpec,
    TensorSpec,
)

from . import calibration, detection, evaluate, graph, robustness
from .data import Dataset
from .golden import write_golden_set
from .recipes import Recipe
from .versions import latest_version

log = logging.getLogger(__name__)

MIN_CHANGE = 0.05  # a temperature within 5% of 1 is left out of the graph: nothing to correct


def _validation(data: Dataset, recipe: Recipe) -> tuple[np.ndarray, np.ndarray]:
    from .export import validation_split

    _, held_out = validation_split(len(data.x_train), recipe.validation_split, recipe.held_out_seed)
    return data.x_train[held_out], data.y_train[held_out]


def _calibrate(staging: Path, data: Dataset, recipe: Recipe, test: np.ndarray | None
               ) -> tuple[Calibration | None, np.ndarray | None]:  # fmt: skip
    """The calibration record, and the test split's probabilities as the final graph serves them. `test`: the
    staged graph's test-split probabilities when the caller has them (the quality pass), so they are not run
    again."""
    x_val, y_val = _validation(data, recipe)
    if len(x_val) == 0:
        return None, test
    session = evaluate.cpu_session(staging / MODEL_FILE)
    val = evaluate.run_batched(session, x_val, OUTPUT_PROBABILITIES)
    if test is None:
        test = evaluate.run_batched(session, data.x_test, OUTPUT_PROBABILITIES)
    fitted = calibration.calibrate(val, y_val, test, data.y_test, f"validation split ({len(x_val)} training images)")
    temperature = fitted.temperature
    helps = abs(np.log(temperature)) > np.log1p(MIN_CHANGE) and calibration.lowers_ece(
        val, y_val, temperature, seed=recipe.seed
    )
    if helps:
        graph.add_temperature(staging / MODEL_FILE, temperature)
        served = evaluate.run_batched(evaluate.cpu_session(staging / MODEL_FILE), data.x_test, OUTPUT_PROBABILITIES)
        gap = float(np.abs(served - calibration.scale(test, temperature)).max())
        if gap > 1e-5:
            raise RuntimeError(f"the calibrated graph differs from temperature scaling by {gap:.2e}")
        return fitted, served
    log.info("temperature %.3f would not reliably lower the validation ECE: left out of the graph", temperature)
    return fitted.model_copy(update={"in_graph": False, "after": fitted.before}), test


def drift_baseline(spec: ModelSpec, staging: Path, inputs: np.ndarray, scores: np.ndarray | None,
                   score: str | None, probabilities: np.ndarray | None = None) -> DriftBaseline:  # fmt: skip
    """The test split as served (`inputs`: what the model takes, noisy for a denoiser), in the statistics of
    pixelserve.drift: pixel histogram, prediction shares, score deciles. A classifier's `probabilities` of
    `inputs` from the final graph are run here unless given."""
    predictions = None
    if spec.task == "classify":
        if probabilities is None:
            probabilities = evaluate.run_batched(evaluate.cpu_session(staging / MODEL_FILE), inputs,
                                                 OUTPUT_PROBABILITIES)  # fmt: skip
        predictions = drift.shares(drift.class_counts(probabilities.argmax(axis=1), len(spec.labels or [])))
    edges = None if scores is None else drift.score_edges(scores)
    pixels = drift.shares(drift.pixel_counts(inputs))
    return DriftBaseline(samples=len(inputs), pixel_histogram=pixels, predictions=predictions,
                         score=score if scores is not None else None, score_edges=edges)  # fmt: skip


def _partner(spec: ModelSpec, repository: Path) -> Path | None:
    """The latest version of the paired OOD autoencoder in the repository, if it has one."""
    if spec.pairing is None:
        return None
    try:
        return latest_version(repository / spec.pairing.ood_model)
    except FileNotFoundError:
        return None


def finish_classifier(staging: Path, spec: ModelSpec, recipe: Recipe, data: Dataset, data_dir: Path | None,
                      repository: Path, test: np.ndarray | None = None) -> ModelSpec:  # fmt: skip
    fitted, served = _calibrate(staging, data, recipe, test)
    session = evaluate.cpu_session(staging / MODEL_FILE)
    quality = spec.quality
    if quality is not None:
        quality = quality.model_copy(update={"variants": robustness.variant_accuracies(session, spec.preprocessing,
                                                                                          data) or None})  # fmt: skip
    pairing, scores = spec.pairing, None
    partner = _partner(spec, repository)
    if pairing is not None and partner is not None and data_dir is not None:
        (staging / SPEC_FILE).write_text(spec.model_dump_json())  # ood_report reads the classifier's model.json
        report = detection.ood_report(staging, partner, data_dir, uploaded=True)
        pairing = pairing.model_copy(update={"ood": report, "ood_version": None})
        scores = detection.served_errors(evaluate.cpu_session(partner / MODEL_FILE), data.x_test)
    spec = spec.model_copy(update={"calibration": fitted, "quality": quality, "pairing": pairing})
    baseline = drift_baseline(spec, staging, data.x_test, scores, "ood_score", served)
    spec = spec.model_copy(update={"drift": baseline})
    golden = write_golden_set(spec, session, data, staging, seed=recipe.seed)
    return spec.model_copy(update={"golden": golden})


def _threshold_by_mode(anomaly: AnomalyThreshold, staging: Path, data: Dataset, recipe: Recipe, data_dir: Path,
                       test_scores: np.ndarray) -> AnomalyThreshold:  # fmt: skip
    """The recipe's threshold mode on the held-out normal errors (and, for "f1", a labelled set: those errors
    and foreign images drawn with another seed than the ones the detection metrics are measured on)."""
    mode = recipe.anomaly_threshold_mode
    if mode == "percentile":
        return anomaly
    session = evaluate.cpu_session(staging / MODEL_FILE)
    x_val, _ = _validation(data, recipe)
    normal = detection.served_errors(session, x_val)
    labelled = None
    if mode == "f1":
        shape = data.image_shape
        foreign = detection.foreign_sets(data.name, data_dir, shape, len(x_val) // 3 + 1, recipe.seed + 1)
        scores = np.concatenate([normal, *(detection.served_errors(session, x) for x in foreign.values())])
        labelled = (scores, np.arange(len(scores)) >= len(normal))
    value, percentile = detection.choose_threshold(mode, normal, percentile=recipe.anomaly_percentile,
                                                   target_fpr=recipe.anomaly_target_fpr, labelled=labelled)  # fmt: skip
    return anomaly.model_copy(update={
        "mode": mode, "value": value, "percentile": min(max(percentile, 1e-6), 100 - 1e-6),
        "target_fpr": recipe.anomaly_target_fpr if mode == "fpr" else None,
        "false_positive_rate": detection.flag_rate(test_scores, value),
    })  # fmt: skip


def finish_autoencoder(staging: Path, spec: ModelSpec, recipe: Recipe, data: Dataset, data_dir: Path | None
                       ) -> ModelSpec:  # fmt: skip
    graph.add_anomaly_map(staging / MODEL_FILE)
    height, width = spec.preprocessing.height, spec.preprocessing.width
    outputs = [*spec.outputs, TensorSpec(name=OUTPUT_ANOMALY_MAP, dtype="float32", shape=[-1, height, width])]
    spec = spec.model_copy(update={"outputs": outputs})
    session = evaluate.cpu_session(staging / MODEL_FILE)
    scores = detection.served_errors(session, data.x_test)
    anomaly = spec.anomaly
    if anomaly is not None and data_dir is not None:
        anomaly = _threshold_by_mode(anomaly, staging, data, recipe, data_dir, scores)
        (staging / SPEC_FILE).write_text(spec.model_copy(update={"anomaly": anomaly}).model_dump_json())
        found = detection.anomaly_detection(staging, data_dir, uploaded=True)
        anomaly = anomaly.model_copy(update={"detection": found})
    spec = spec.model_copy(update={"anomaly": anomaly})
    served = data.x_test
    if spec.task == "denoise":  # a denoiser is sent noisy images: its baseline is of those
        served = evaluate.add_noise(data.x_test, recipe.noise_sigma, seed=recipe.seed)
        scores = detection.served_errors(session, served)
    baseline = drift_baseline(spec, staging, served, scores, "reconstruction_error")
    spec = spec.model_copy(update={"drift": baseline})
    golden = write_golden_set(spec, session, data, staging, sigma=recipe.noise_sigma, seed=recipe.seed)
    return spec.model_copy(update={"golden": golden})


def finish(staging: Path, spec: ModelSpec, recipe: Recipe, data: Dataset, data_dir: Path | None,
           repository: Path, test_probabilities: np.ndarray | None = None) -> ModelSpec:  # fmt: skip
    """The trust steps of `spec.task` on the staged graph (which they may change); the model.json to write.
    `test_probabilities`: a classifier's test-split probabilities from the staged graph, if already run."""
    if spec.task == "classify":
        return finish_classifier(staging, spec, recipe, data, data_dir, repository, test_probabilities)
    return finish_autoencoder(staging, spec, recipe, data, data_dir)


def refresh(model_dir: Path, data_dir: Path | None) -> ModelSpec:
    """Measure the trust evidence of an already exported version again, in place: for versions exported before
    a trust step existed, or after its partner autoencoder changed. No TensorFlow: the steps only read the ONNX
    graph and the dataset. The version directory is replaced whole once every step has passed."""
    from .data import load_dataset

    spec = ModelSpec.load(model_dir / SPEC_FILE)
    if spec.calibration is not None and spec.calibration.in_graph:
        raise ValueError(f"{model_dir} already has temperature scaling in its graph: export it again from its run")
    recipe = Recipe.from_dict(spec.recipe)
    data = load_dataset(recipe.dataset, data_dir)
    with tempfile.TemporaryDirectory(prefix="pixelserve-trust-", dir=model_dir.parent) as tmp:
        staging = Path(tmp) / "model"
        shutil.copytree(model_dir, staging)
        spec = finish(staging, spec, recipe, data, data_dir, model_dir.parent.parent)
        spec = spec.write(staging)
        old = Path(tmp) / "old"
        model_dir.rename(old)
        staging.rename(model_dir)
    log.info("trust evidence of %s/%s measured again", spec.name, spec.version)
    return spec
