"""Issue 23: what batch normalisation costs in the train step, Keras' BatchNormalization against the fused one.

Each recipe's network is built twice from the same seed, once with Keras' layer and once with
`training.layers.FusedBatchNormalization`, and both train on the same cached batches (no input pipeline) in
alternating rounds, so the machine's load falls on both sides alike. Whole epochs of the recipe before and after
every change to the step: `bench/epoch_speed.py`.

    python -m bench.batchnorm_cost --recipes mnist-classifier cifar10-classifier --steps 20 --rounds 3
"""

from __future__ import annotations

import argparse
import time
from unittest import mock

import keras
import numpy as np
import tensorflow as tf

from pixelserve.training import models
from pixelserve.training import train as T
from pixelserve.training.data import load_dataset
from pixelserve.training.recipes import get_recipe

SIDES = {"keras": keras.layers.BatchNormalization, "fused": models.FusedBatchNormalization}


def cached(recipe_name: str, batches: int = 8) -> tuple[tf.data.Dataset, keras.Model, keras.Model, int]:
    """Cached batches of real training images and the recipe's network with each batch norm, compiled."""
    recipe = get_recipe(recipe_name)
    data = load_dataset(recipe.dataset, None)
    n = recipe.batch_size * batches
    x = data.x_train[:n].astype(np.float32) / 255.0
    x = x[..., None] if x.ndim == 3 else x
    y = x if recipe.task != "classify" else tf.one_hot(data.y_train[:n].reshape(-1), len(data.labels))
    batches_ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(recipe.batch_size).repeat().prefetch(2)
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if recipe.mixed_precision else "float32")
    nets = []
    for layer in SIDES.values():
        keras.utils.set_random_seed(recipe.seed)
        with mock.patch.object(models, "FusedBatchNormalization", layer):
            net = T.build_net(recipe, data, T._normalization(data.x_train[:5000])).model
        net.compile(optimizer=T._optimizer(recipe, 100), loss=T._loss(recipe))
        net.fit(batches_ds, epochs=1, steps_per_epoch=3, verbose=0)  # traced and warm
        nets.append(net)
    return batches_ds, nets[0], nets[1], recipe.batch_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", nargs="+", default=["mnist-classifier", "cifar10-classifier"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for name in args.recipes:
        batches, keras_net, fused_net, batch_size = cached(name)
        times: dict[str, list[float]] = {side: [] for side in SIDES}
        for _ in range(args.rounds):
            for side, net in zip(SIDES, (keras_net, fused_net), strict=True):
                start = time.perf_counter()
                net.fit(batches, epochs=1, steps_per_epoch=args.steps, verbose=0)
                times[side].append(1000 * (time.perf_counter() - start) / args.steps)
        shown = ", ".join(f"{side} " + " / ".join(f"{t:.1f}" for t in ts) + " ms" for side, ts in times.items())
        ratio = np.median(times["keras"]) / np.median(times["fused"])
        print(f"{name} (batch {batch_size}): {shown}; keras / fused {ratio:.2f}x (medians)", flush=True)
        keras.mixed_precision.set_global_policy("float32")


if __name__ == "__main__":
    main()
