"""Profile for issue 23: input pipeline alone (no aug / Keras aug / fast aug) vs train step alone vs both.

Usage: python bench/augment_profile.py STEPS [keras|fast|both]
"""

import dataclasses
import sys
import time

import keras
import tensorflow as tf

from pixelserve.training import train as T
from pixelserve.training.data import load_dataset
from pixelserve.training.export import validation_split
from pixelserve.training.recipes import get_recipe

STEPS = int(sys.argv[1])
WHICH = sys.argv[2] if len(sys.argv) > 2 else "both"


def keras_augmenter(recipe):
    """The pre-issue-23 augmenter (copy of train._augmenter as it was)."""
    seed = recipe.seed
    return keras.Sequential(
        [
            keras.layers.RandomRotation(recipe.augment_rotation, fill_mode="constant", seed=seed),
            keras.layers.RandomTranslation(
                recipe.augment_shift, recipe.augment_shift, fill_mode="constant", interpolation="nearest", seed=seed
            ),
            keras.layers.RandomZoom(recipe.augment_zoom, fill_mode="constant", seed=seed),
        ]
    )


def time_iter(ds, n):
    it = iter(ds)
    for _ in range(5):
        next(it)
    t = time.perf_counter()
    for _ in range(n):
        x, _y = next(it)
    x.numpy()
    return time.perf_counter() - t


recipe = get_recipe("mnist-classifier")
keras.utils.set_random_seed(recipe.seed)
data = load_dataset(recipe.dataset, None)
tr, _ = validation_split(len(data.x_train), recipe.validation_split, recipe.seed)
x, y = data.x_train[tr], data.y_train[tr]
plain = dataclasses.replace(recipe, augment_rotation=0.0, augment_shift=0.0, augment_zoom=0.0)
ka = keras_augmenter(recipe)


def with_aug(ds, fn):
    return ds.map(lambda im, lab: (fn(im), lab), num_parallel_calls=tf.data.AUTOTUNE)


base = T._pipeline(plain, x, y, data, training=True)
results = {}
results["pipeline_no_aug"] = time_iter(base, STEPS)
if WHICH in ("keras", "both"):
    results["pipeline_keras_aug"] = time_iter(with_aug(base, lambda im: ka(im, training=True)), STEPS)
    # the Keras augmenter alone, on one fixed batch, no tf.data (eager call in a tf.function)
if WHICH in ("fast", "both"):
    from pixelserve.training.augment import random_affine

    def fast(im):
        return random_affine(
            im, rotation=recipe.augment_rotation, shift=recipe.augment_shift, zoom=recipe.augment_zoom, shear=0.0
        )

    results["pipeline_fast_aug"] = time_iter(with_aug(base, fast), STEPS)

keras.mixed_precision.set_global_policy("mixed_bfloat16")
norm = T._normalization(x)
net = T.build_net(recipe, data, norm)
core = net.model
core.compile(optimizer=T._optimizer(recipe, STEPS), loss=T._loss(recipe), metrics=["accuracy"])
batches = list(base.take(20))
cached = (
    tf.data.Dataset.from_tensor_slices((tf.concat([b[0] for b in batches], 0), tf.concat([b[1] for b in batches], 0)))
    .batch(recipe.batch_size)
    .repeat()
)
timer = T.EpochSeconds()
results["train_step_only"] = core.fit(cached, epochs=2, steps_per_epoch=STEPS, verbose=0, callbacks=[timer]).history[
    "seconds"
][-1]
variants = []
if WHICH in ("keras", "both"):
    variants.append(("fit_with_keras_aug", with_aug(base, lambda im: ka(im, training=True))))
if WHICH in ("fast", "both"):
    variants.append(("fit_with_fast_aug", with_aug(base, fast)))
REPS = int(sys.argv[3]) if len(sys.argv) > 3 else 1
for rep in range(REPS):
    for name, ds in variants:
        results[f"{name}#{rep + 1}"] = core.fit(
            ds, epochs=2, steps_per_epoch=STEPS, verbose=0, callbacks=[timer]
        ).history["seconds"][-1]
    history = core.fit(cached, epochs=2, steps_per_epoch=STEPS, verbose=0, callbacks=[timer])
    results[f"train_step_only#{rep + 1}"] = history.history["seconds"][-1]
for k, v in results.items():
    print(f"{k:24s} {v:8.2f} s for {STEPS} batches of {recipe.batch_size} = {1000 * v / STEPS:7.1f} ms/batch")
