"""Several networks of one recipe, trained from different seeds, exported as one graph that averages their
probabilities.

Why: networks from different seeds miss partly different images, so their mean is right more often (Deotte's
15-net MNIST ensemble: 99.75% against 99.64% for one). How much depends on how different the members are: three
seeds of mnist-classifier made 32, 32 and 34 test errors alone and 31 together (docs/models.md).

The members share one held-out split (`split_seed`), so the calibration and the anomaly threshold the export
measures on it use images that no member trained on. The served graph stays one file with the same inputs and
outputs as a single network: clients see no difference except the cost.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import keras
import numpy as np

from .recipes import Recipe
from .train import CHECKPOINT, HISTORY_FILE, RECIPE_FILE, TRAINING_FILE, RunResult, export_trained, train

log = logging.getLogger(__name__)

# Fields a member may differ in from the ensemble's recipe: its seed, and the count itself (the split's seed is
# compared as the seed it resolves to).
_PER_MEMBER = {"seed", "members", "split_seed"}


def member_recipe(recipe: Recipe, index: int) -> Recipe:
    """Member `index` of `recipe`: one network, seeded `seed + index`, on the ensemble's held-out split."""
    return dataclasses.replace(recipe, members=1, seed=recipe.seed + index, split_seed=recipe.held_out_seed)


def train_ensemble(
    recipe: Recipe, *, data_dir: Path | None, repository: Path, export: bool = True, version: int | None = None,
    **options: Any,
) -> RunResult:  # fmt: skip
    """Train `recipe.members` networks one after another (`options`: as for `train`), then export their mean. Each
    member keeps its own run directory, so `pixelserve export RUN RUN ...` can redo the export."""
    runs = []
    for index in range(recipe.members):
        member = member_recipe(recipe, index)
        log.info("%s: member %d of %d (seed %d)", recipe.name, index + 1, recipe.members, member.seed)
        runs.append(train(member, data_dir=data_dir, repository=repository, export=False, **options).run_dir)
    model_dir = export_ensemble(runs, data_dir, repository, version) if export else None
    return RunResult(runs[0], model_dir)


def average(cores: list[keras.Model], name: str) -> keras.Model:
    """One model whose output is the mean of the members' probabilities, each member nested under its own name."""
    image = keras.Input(cores[0].input_shape[1:], name="image")
    outputs = [keras.Model(c.inputs, c.outputs[0], name=f"member_{i}")(image) for i, c in enumerate(cores)]
    return keras.Model(image, keras.layers.Average(name="ensemble_mean")(outputs), name=name)


def _read_run(run_dir: Path) -> tuple[Recipe, dict[str, list[float]], dict[str, Any]]:
    recipe = Recipe.from_dict(json.loads((run_dir / RECIPE_FILE).read_text()))
    return recipe, json.loads((run_dir / HISTORY_FILE).read_text()), json.loads((run_dir / TRAINING_FILE).read_text())


def ensemble_recipe(recipes: list[Recipe], name: str | None = None) -> Recipe:
    """The recipe the members make together, exported as `name` (default: the members' own); refuses members of
    different recipes, seeds used twice, or members that did not hold out the same images."""
    first = recipes[0]
    if first.task != "classify":
        raise ValueError(f"{first.name}: only classifiers are averaged into an ensemble (task {first.task})")
    for other in recipes[1:]:
        differs = {k for k, v in dataclasses.asdict(other).items() if getattr(first, k) != v} - _PER_MEMBER
        if differs:
            raise ValueError(f"members differ in {', '.join(sorted(differs))}: an ensemble needs one recipe")
    if len({r.held_out_seed for r in recipes}) > 1:
        raise ValueError("members held out different validation images (split seeds differ): pass split_seed")
    seeds = [r.seed for r in recipes]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"members share a seed ({seeds}): they would be the same network twice")
    return dataclasses.replace(
        first,
        name=name or first.name,
        members=len(recipes),
        seed=min(seeds),
        split_seed=first.held_out_seed,
        description=f"Ensemble of {len(recipes)} networks (seeds {', '.join(map(str, seeds))}), mean probability "
        f"in the graph; each: {first.description}",
    )


def _mean_history(histories: list[dict[str, list[float]]]) -> dict[str, list[float]]:
    keys = set.intersection(*(set(h) for h in histories))
    epochs = min(len(histories[0][k]) for k in keys) if keys else 0
    return {k: [float(np.mean([h[k][e] for h in histories])) for e in range(epochs)] for k in sorted(keys)}


def export_ensemble(
    run_dirs: list[Path],
    data_dir: Path | None,
    repository: Path,
    version: int | None = None,
    name: str | None = None,
    changes: dict[str, str] | None = None,
) -> Path:
    """Export finished member runs as one model (`name`: default, the members' recipe name): the mean of their
    probabilities, measured like any export. `changes`: export-time recipe fields, as for `export_run`."""
    if len(run_dirs) < 2:
        raise ValueError("an ensemble needs at least two member runs")
    runs = [_read_run(d) for d in run_dirs]
    recipe = ensemble_recipe([r for r, _, _ in runs], name).with_overrides(changes or {})
    cores = [keras.models.load_model(d / CHECKPOINT) for d in run_dirs]
    core = average(cores, recipe.name.replace("-", "_"))
    infos = [info for _, _, info in runs]
    training_info = {
        "seconds": round(sum(i["seconds"] for i in infos), 1),
        "epochs_run": infos[0]["epochs_run"],
        "hardware": infos[0]["hardware"],
        "train_samples": infos[0]["train_samples"],
        "validation_samples": infos[0]["validation_samples"],
        "mixed_precision": infos[0]["mixed_precision"],
        "members": [
            {"run": d.name, "seed": recipe_.seed, "seconds": info["seconds"]}
            for d, (recipe_, _, info) in zip(run_dirs, runs, strict=True)
        ],
    }
    log.info("%s: exporting the mean of %d members", recipe.name, len(cores))
    history = _mean_history([h for _, h, _ in runs])
    return export_trained(core, recipe, data_dir, repository, history, training_info, version)
