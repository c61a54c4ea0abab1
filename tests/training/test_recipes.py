"""Every recipe builds, trains a step, exports to ONNX, passes the parity check and writes a valid model.json; its
run directory says what each epoch cost."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import onnxruntime as ort
import pytest

from pixelserve.modelspec import MODEL_FILE, SPEC_FILE, ModelSpec
from pixelserve.training.recipes import RECIPES, get_recipe
from pixelserve.training.train import HISTORY_FILE, TRAINING_FILE, train


@pytest.mark.parametrize("name", sorted(n for n, r in RECIPES.items() if r.members == 1))  # ensembles: test_ensemble
def test_recipe_trains_one_step_and_exports_with_parity(name: str, tiny_data_dir: Path, tmp_path: Path) -> None:
    recipe = get_recipe(name).with_overrides({"epochs": "1", "batch_size": "32", "parity_samples": "64"})
    result = train(
        recipe, data_dir=tiny_data_dir, repository=tmp_path / "models", runs_dir=tmp_path / "runs", verbose=0
    )

    assert result.model_dir == tmp_path / "models" / name / "1"
    with (result.run_dir / "log.csv").open() as log:
        (epoch,) = list(csv.DictReader(log))
    seconds = json.loads((result.run_dir / HISTORY_FILE).read_text())["seconds"]
    assert seconds == [float(epoch["seconds"])] and seconds[0] > 0
    info = json.loads((result.run_dir / TRAINING_FILE).read_text())
    assert info["seconds_per_epoch"] == round(seconds[0], 1) and info["seconds_per_epoch"] <= info["seconds"]
    spec = ModelSpec.load(result.model_dir / SPEC_FILE)
    assert spec.parity is not None and spec.parity.passed and spec.parity.max_abs_diff <= 1e-4
    assert spec.recipe["name"] == name and spec.recipe["epochs"] == 1
    session = ort.InferenceSession(str(result.model_dir / MODEL_FILE), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert session.get_inputs()[0].type == "tensor(uint8)"
    assert not isinstance(session.get_inputs()[0].shape[0], int)  # a dynamic (named or unnamed) batch axis
    assert sorted(o.name for o in session.get_outputs()) == sorted(t.name for t in spec.outputs)
    for artifact in spec.artifacts:
        assert (result.model_dir / artifact).stat().st_size > 0
    if spec.task == "reconstruct":
        assert spec.anomaly is not None and 0 <= spec.anomaly.false_positive_rate <= 1
