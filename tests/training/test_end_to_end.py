"""Train the MNIST CNN for one epoch on the real data, export it, and check it with onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from pixelserve.modelspec import SPEC_FILE, ModelSpec
from pixelserve.training.data import load_dataset
from pixelserve.training.recipes import get_recipe
from pixelserve.training.train import train


@pytest.mark.slow
def test_one_epoch_mnist_cnn_exports_a_model_above_98_percent(shared_datasets: Path, tmp_path: Path) -> None:
    recipe = get_recipe("mnist-classifier").with_overrides({"epochs": "1"})
    result = train(
        recipe, data_dir=shared_datasets, repository=tmp_path / "models", runs_dir=tmp_path / "runs", verbose=0
    )

    session = ort.InferenceSession(str(result.model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    data = load_dataset("mnist", shared_datasets, tmp_path / "cache")
    predicted = np.concatenate(
        [
            session.run(["probabilities"], {"image": data.x_test[i : i + 1000]})[0].argmax(1)
            for i in range(0, 10000, 1000)
        ]
    )
    accuracy = float((predicted == data.y_test).mean())
    assert accuracy >= 0.98
    spec = ModelSpec.load(result.model_dir / SPEC_FILE)
    assert spec.quality is not None and abs(spec.quality.metrics["accuracy"] - accuracy) < 1e-9
    assert spec.dataset is not None and spec.dataset.sha256 == data.sha256
    assert spec.parity is not None and spec.parity.samples >= 256 and spec.parity.max_abs_diff <= 1e-4
    assert {"learning_curves.png", "confusion_matrix.png"} <= set(spec.artifacts)
