"""Issue 23: where the mnist-classifier train step's time goes (cached batches, no augmentation, no tf.data work).

Usage: python bench/train_step_profile.py STEPS
"""

import sys

import keras
import numpy as np
import tensorflow as tf

from bench.epoch_timer import EpochTimer
from pixelserve.training import optim
from pixelserve.training import train as T
from pixelserve.training.data import load_dataset
from pixelserve.training.recipes import get_recipe

STEPS = int(sys.argv[1])


recipe = get_recipe("mnist-classifier")
data = load_dataset(recipe.dataset, None)
x = data.x_train[:2560].astype(np.float32) / 255.0
y = tf.one_hot(data.y_train[:2560].reshape(-1), 10)
cached = tf.data.Dataset.from_tensor_slices((x, y)).batch(128).repeat().prefetch(2)
norm = T._normalization(data.x_train[:5000])
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
    core.compile(optimizer=T._optimizer(recipe, STEPS), loss=T._loss(recipe), metrics=["accuracy"], jit_compile=jit)
    timer = EpochTimer()
    cbs = [timer] + ([optim.Lookahead(2 * STEPS, 5)] if lookahead else [])
    core.fit(cached, epochs=2, steps_per_epoch=STEPS, verbose=0, callbacks=cbs)
    print(
        f"policy={policy:15s} jit_compile={jit!s:5s} lookahead={lookahead!s:5s} "
        f"{1000 * timer.last / STEPS:6.1f} ms/step over {STEPS} steps",
        flush=True,
    )
