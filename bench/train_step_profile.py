"""Issue 23: where the mnist-classifier train step's time goes (cached batches, no augmentation, no tf.data work).

Usage: python -m bench.train_step_profile STEPS
"""

import sys

import keras
import numpy as np
import tensorflow as tf

from pixelserve.training import optim
from pixelserve.training import train as T
from pixelserve.training.data import Dataset, load_dataset
from pixelserve.training.recipes import Recipe, get_recipe


def cached_batches() -> tuple[Recipe, Dataset, tf.data.Dataset, T.Normalization]:
    """20 batches of 128 training digits, cached and repeated: the train step alone, no input pipeline work."""
    recipe = get_recipe("mnist-classifier")
    data = load_dataset(recipe.dataset, None)
    x = data.x_train[:2560].astype(np.float32) / 255.0
    y = tf.one_hot(data.y_train[:2560].reshape(-1), 10)
    cached = tf.data.Dataset.from_tensor_slices((x, y)).batch(128).repeat().prefetch(2)
    return recipe, data, cached, T._normalization(data.x_train[:5000])


def main(steps: int) -> None:
    recipe, data, cached, norm = cached_batches()
    for policy, jit, lookahead in [
        ("mixed_bfloat16", False, False),
        ("mixed_bfloat16", False, True),
        ("float32", False, False),
        ("mixed_bfloat16", True, False),
        ("float32", True, False),
    ]:
        keras.utils.set_random_seed(1)
        keras.mixed_precision.set_global_policy(policy)
        core = T.build_net(recipe, data, norm).model
        core.compile(optimizer=T._optimizer(recipe, steps), loss=T._loss(recipe), metrics=["accuracy"],
                     jit_compile=jit)  # fmt: skip
        cbs = [T.EpochSeconds()] + ([optim.Lookahead(2 * steps, 5)] if lookahead else [])
        seconds = core.fit(cached, epochs=2, steps_per_epoch=steps, verbose=0, callbacks=cbs).history["seconds"][-1]
        print(
            f"policy={policy:15s} jit_compile={jit!s:5s} lookahead={lookahead!s:5s} "
            f"{1000 * seconds / steps:6.1f} ms/step over {steps} steps",
            flush=True,
        )


if __name__ == "__main__":
    main(int(sys.argv[1]))
