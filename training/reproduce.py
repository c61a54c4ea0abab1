"""Re-measure a committed model on the real test split and compare with what its model.json records.

Uses onnxruntime and numpy only (no TensorFlow), so it is cheap enough for CI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pixelserve.modelspec import MODEL_FILE, SPEC_FILE, ModelSpec

from . import calibration, evaluate
from .data import load_dataset
from .recipes import Recipe


def reproduce_quality(model_dir: Path, data_dir: Path | None) -> dict[str, Any]:
    spec = ModelSpec.load(model_dir / SPEC_FILE)
    recipe = Recipe.from_dict(spec.recipe)
    data = load_dataset(recipe.dataset, data_dir)
    session = evaluate.cpu_session(model_dir / MODEL_FILE)
    measured, classes = evaluate.task_metrics(
        session, spec.task, data.x_test, data.y_test, data.labels, recipe.sigmas, recipe.seed
    )
    recorded = spec.quality.metrics if spec.quality else {}
    report: dict[str, Any] = {
        "model": f"{spec.name}/{spec.version}",
        "recorded": recorded,
        "measured": measured,
        "dataset_sha256_matches": spec.dataset is None or spec.dataset.sha256 == data.sha256,
    }
    if spec.calibration is not None and classes is not None and classes.probabilities is not None:
        # the served probabilities' calibration error, from the same run: model.json's "after" (or "before")
        report["ece"] = {"recorded": spec.calibration.after["ece"],
                         "measured": calibration.ece(classes.probabilities, data.y_test)}  # fmt: skip
    return report


def reproduce_variants(model_dir: Path, data_dir: Path | None) -> dict[str, Any]:
    """Accuracy on real-world variants through the declared preprocessing, and through a plain stretch."""
    from .robustness import variant_accuracies

    spec = ModelSpec.load(model_dir / SPEC_FILE)
    if spec.task != "classify":
        return {}
    data = load_dataset(Recipe.from_dict(spec.recipe).dataset, data_dir)
    session = evaluate.cpu_session(model_dir / MODEL_FILE)
    pre = spec.preprocessing
    return {
        "preprocessing": {"resize": pre.resize, "normalize": pre.normalize},
        "declared": variant_accuracies(session, pre, data),
        "plain_stretch": variant_accuracies(session, pre, data, declared=False),
    }


def record_variants(model_dir: Path, accuracies: dict[str, float]) -> None:
    """Write measured variant accuracies into model.json's quality, keeping everything else as it is."""
    spec = ModelSpec.load(model_dir / SPEC_FILE)
    if spec.quality is None or not accuracies:
        return
    quality = spec.quality.model_copy(update={"variants": accuracies})
    spec.model_copy(update={"quality": quality}).write(model_dir)


def record_golden(model_dir: Path, data_dir: Path | None) -> None:
    """Write the golden set of an exported version from its own graph, and name it in model.json."""
    from .golden import write_golden_set

    spec = ModelSpec.load(model_dir / SPEC_FILE)
    recipe = Recipe.from_dict(spec.recipe)
    data = load_dataset(recipe.dataset, data_dir)
    session = evaluate.cpu_session(model_dir / MODEL_FILE)
    entry = write_golden_set(spec, session, data, model_dir, sigma=recipe.noise_sigma, seed=recipe.seed)
    spec.model_copy(update={"golden": entry}).write(model_dir)
