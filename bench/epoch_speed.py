"""Issue 23: seconds per epoch of a recipe as it trained before 2026-12-07's speed-ups and as it trains now.

"before" puts back the three things changed: Keras' BatchNormalization (now `FusedBatchNormalization`), the
input pipeline that shuffled whole images one by one (now indices, gathered a batch at a time) and the Lookahead
pull as two eager ops per variable (now one compiled call). Both sides run the whole recipe (`train()` without
export: input pipeline, augmentation, callbacks) for N epochs, alternating, so load falls on both alike; each
epoch's wall seconds come from the run's history, with the last epoch's validation accuracy.

    python -m bench.epoch_speed --recipe mnist-classifier --epochs 3 --rounds 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import keras
import numpy as np
import tensorflow as tf

from bench.lookahead_cost import EagerLookahead
from pixelserve.training import models, optim
from pixelserve.training import train as T
from pixelserve.training.recipes import get_recipe


def elementwise_batches(x: np.ndarray, y: np.ndarray, phase: np.ndarray, batch_size: int, seed: int) -> tf.data.Dataset:
    """The training stream as it was built before: every image through tf.data's shuffle and a per-element map."""
    n = len(x)
    ds = tf.data.Dataset.from_tensor_slices((x, y, phase))
    ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True).repeat().enumerate()
    return ds.map(lambda position, item: (*item, position // n)).batch(batch_size)


@contextlib.contextmanager
def side(name: str) -> Iterator[None]:
    if name == "now":
        yield
        return
    with (
        mock.patch.object(models, "FusedBatchNormalization", keras.layers.BatchNormalization),
        mock.patch.object(T, "_shuffled_batches", elementwise_batches),
        mock.patch.object(optim, "Lookahead", EagerLookahead),
    ):
        yield


def epochs(recipe_name: str, name: str, count: int) -> tuple[list[float], float]:
    recipe = get_recipe(recipe_name).with_overrides({"epochs": str(count)})
    with tempfile.TemporaryDirectory(prefix="epoch-speed-") as tmp, side(name):
        run = T.train(recipe, data_dir=None, repository=Path(tmp) / "models", runs_dir=Path(tmp), export=False,
                      verbose=0)  # fmt: skip
        history = json.loads((run.run_dir / T.HISTORY_FILE).read_text())
    return history["seconds"], history.get("val_accuracy", [float("nan")])[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="mnist-classifier")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    seconds: dict[str, list[float]] = {"before": [], "now": []}
    for round_ in range(args.rounds):
        for name in seconds:
            per_epoch, accuracy = epochs(args.recipe, name, args.epochs)
            seconds[name] += per_epoch
            shown = ", ".join(f"{s:.1f}" for s in per_epoch)
            print(f"round {round_ + 1} {name}: {shown} s per epoch; validation accuracy {accuracy:.4f}", flush=True)
    medians = {name: float(np.median(values)) for name, values in seconds.items()}
    print(f"{args.recipe}: median {medians['before']:.1f} s before, {medians['now']:.1f} s now: "
          f"{medians['before'] / medians['now']:.2f}x", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
