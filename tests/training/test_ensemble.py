"""An ensemble trains its members from different seeds on one held-out split and exports one graph whose output
is the mean of theirs; members of different recipes are refused."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import keras
import numpy as np
import onnxruntime as ort
import pytest

from pixelserve.cli import main
from pixelserve.modelspec import MODEL_FILE, SPEC_FILE, ModelSpec
from pixelserve.training.cli import ExportSettings
from pixelserve.training.data import load_dataset
from pixelserve.training.ensemble import ensemble_recipe, member_recipe, train_ensemble
from pixelserve.training.export import serving_model
from pixelserve.training.recipes import get_recipe
from pixelserve.training.train import CHECKPOINT, RECIPE_FILE, train

TINY = {"epochs": "1", "batch_size": "32", "parity_samples": "64"}


def test_ensemble_graph_answers_the_mean_of_its_members(tiny_data_dir: Path, tmp_path: Path) -> None:
    recipe = get_recipe("mnist-classifier-ensemble").with_overrides({**TINY, "members": "2"})
    result = train_ensemble(
        recipe, data_dir=tiny_data_dir, repository=tmp_path / "models", runs_dir=tmp_path / "runs", verbose=0
    )

    runs = sorted((tmp_path / "runs" / "mnist-classifier-ensemble").iterdir())
    assert len(runs) == 2, "each member keeps its own run directory"
    member_recipes = [json.loads((run / RECIPE_FILE).read_text()) for run in runs]
    assert sorted(r["seed"] for r in member_recipes) == [1337, 1338]
    assert {r["split_seed"] for r in member_recipes} == {1337}, "members hold out the same images"

    assert result.model_dir is not None
    spec = ModelSpec.load(result.model_dir / SPEC_FILE)
    assert spec.name == "mnist-classifier-ensemble" and result.model_dir.parent.name == spec.name
    assert spec.recipe["members"] == 2 and spec.description.startswith("Ensemble of 2 networks")
    assert [m["seed"] for m in spec.training["members"]] == [1337, 1338]
    assert spec.parity is not None and spec.parity.passed

    images = load_dataset("mnist", tiny_data_dir, tmp_path / "cache").x_test[:16]
    session = ort.InferenceSession(str(result.model_dir / MODEL_FILE), providers=["CPUExecutionProvider"])
    served = session.run(["probabilities"], {"image": images})[0]
    members = [
        serving_model(keras.models.load_model(run / CHECKPOINT), recipe, (28, 28, 1)).predict(images, verbose=0)
        for run in runs
    ]
    assert not np.allclose(members[0]["probabilities"], members[1]["probabilities"], atol=1e-3), "two seeds"
    mean = (members[0]["probabilities"] + members[1]["probabilities"]) / 2
    np.testing.assert_allclose(served, mean, atol=1e-4)


def test_single_network_training_refuses_an_ensemble_recipe(tiny_data_dir: Path, tmp_path: Path) -> None:
    recipe = get_recipe("mnist-classifier").with_overrides({**TINY, "members": "3"})
    with pytest.raises(ValueError, match="ensemble"):
        train(recipe, data_dir=tiny_data_dir, repository=tmp_path / "m", runs_dir=tmp_path / "r", verbose=0)


def test_members_share_the_split_and_differ_in_seed() -> None:
    recipe = get_recipe("mnist-classifier").with_overrides({"seed": "7", "members": "3"})
    members = [member_recipe(recipe, i) for i in range(3)]
    assert [m.seed for m in members] == [7, 8, 9]
    assert {m.held_out_seed for m in members} == {7} and {m.members for m in members} == {1}
    assert ensemble_recipe(members).members == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epochs": 3}, "members differ in epochs"),
        ({"seed": 1337}, "share a seed"),
        ({"split_seed": 99}, "held out different validation images"),
    ],
)
def test_members_of_different_recipes_are_refused(change: dict[str, int], message: str) -> None:
    first = member_recipe(get_recipe("mnist-classifier"), 0)
    second = dataclasses.replace(member_recipe(get_recipe("mnist-classifier"), 1), **change)
    with pytest.raises(ValueError, match=message):
        ensemble_recipe([first, second])


def test_an_ensemble_of_existing_runs_takes_another_name() -> None:
    members = [member_recipe(get_recipe("mnist-classifier"), i) for i in range(2)]
    assert ensemble_recipe(members, "mnist-classifier-ensemble").name == "mnist-classifier-ensemble"
    assert ensemble_recipe(members).name == "mnist-classifier"


def test_autoencoders_are_not_averaged() -> None:
    recipe = get_recipe("mnist-autoencoder")
    with pytest.raises(ValueError, match="only classifiers"):
        ensemble_recipe([member_recipe(recipe, 0), member_recipe(recipe, 1)])


def test_export_takes_several_runs() -> None:
    settings = ExportSettings.from_cli(["runs/a", "runs/b", "runs/c"])
    assert settings.run_dirs == [Path("runs/a"), Path("runs/b"), Path("runs/c")]


def test_export_of_missing_runs_exits_with_a_message(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="is not a finished training run"):
        main(["export", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "m")])
