"""Where an epoch's time goes: the input pipeline alone (with and without the recipe's augmentation) against the
train step alone, per batch.

Issue 23 blamed augmentation for most of an MNIST epoch; on 2 CPU cores it turned out to be a few per cent, so
measure before optimising: `python -m pixelserve.training.epoch_profile mnist-classifier --steps 100`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import keras
import tensorflow as tf

from .data import load_dataset
from .export import validation_split
from .recipes import Recipe, get_recipe
from .train import EpochSeconds, _loss, _normalization, _optimizer, _pipeline, build_net

WARMUP_BATCHES = 5


def pipeline_ms(dataset: tf.data.Dataset, batches: int) -> float:
    """Milliseconds per batch of iterating `dataset` alone, after a few warm-up batches."""
    iterator = iter(dataset)
    for _ in range(WARMUP_BATCHES):
        next(iterator)
    started = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return 1000 * (time.perf_counter() - started) / batches


def fit_ms(model: keras.Model, dataset: tf.data.Dataset, steps: int) -> float:
    """Milliseconds per step of `fit` on `dataset`; the first of two epochs absorbs tracing and is not counted."""
    history = model.fit(dataset, epochs=2, steps_per_epoch=steps, shuffle=False, verbose=0, callbacks=[EpochSeconds()])
    return 1000 * history.history["seconds"][-1] / steps


def profile(recipe: Recipe, data_dir: Path | None, steps: int) -> dict[str, float]:
    """Per-batch milliseconds of: the pipeline without and with augmentation, the train step on cached batches
    (no input work), and fit on the real augmented pipeline."""
    keras.utils.set_random_seed(recipe.seed)
    data = load_dataset(recipe.dataset, data_dir)
    train_idx, _ = validation_split(len(data.x_train), recipe.validation_split, recipe.held_out_seed)
    x, y = data.x_train[train_idx], data.y_train[train_idx]
    plain = dataclasses.replace(
        recipe, augment_rotation=0.0, augment_shift=0.0, augment_zoom=0.0, augment_shear=0.0, noise_sigma=0.0
    )
    augmented = _pipeline(recipe, x, y, data, training=True)
    bare = _pipeline(plain, x, y, data, training=True)
    result = {"pipeline_plain_ms": pipeline_ms(bare, steps), "pipeline_augmented_ms": pipeline_ms(augmented, steps)}

    keras.mixed_precision.set_global_policy("mixed_bfloat16" if recipe.mixed_precision else "float32")
    try:
        normalization = _normalization(x) if recipe.task == "classify" else None
        model = build_net(recipe, data, normalization).model
        model.compile(optimizer=_optimizer(recipe, steps), loss=_loss(recipe))
        cached = bare.take(min(steps, 20)).cache().repeat()
        result["train_step_ms"] = fit_ms(model, cached, steps)
        result["fit_augmented_ms"] = fit_ms(model, augmented, steps)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", help="a recipe name (pixelserve recipes)")
    parser.add_argument("--steps", type=int, default=100, help="batches per measurement")
    parser.add_argument("--data-dir", type=Path, default=None, help="folder with <dataset>.npz (else the default)")
    args = parser.parse_args(argv)
    recipe = get_recipe(args.recipe)
    report = profile(recipe, args.data_dir, args.steps)
    print(json.dumps({"recipe": recipe.name, "batch_size": recipe.batch_size, "steps": args.steps, **report}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
