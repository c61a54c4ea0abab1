"""Issue 23 A/B: train mnist-classifier for N epochs with the old Keras augmenter or the new affine one.

Usage: python bench/augment_ab.py keras|fast EPOCHS [SEED]
Same seed, same split, same recipe otherwise; prints per-epoch seconds (Keras verbose=2) and test accuracy of
the float32 checkpoint (no TTA) on the real MNIST test split.
"""

import json
import resource
import sys
import time
from pathlib import Path

import keras
import numpy as np

from pixelserve.training import train as T
from pixelserve.training.data import load_dataset
from pixelserve.training.recipes import get_recipe

mode, epochs = sys.argv[1], int(sys.argv[2])


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class EpochTimer(keras.callbacks.Callback):
    """Wall seconds and CPU seconds (user + system, all threads of this process) per epoch; CPU seconds barely
    change when other processes share the cores, wall seconds do."""

    def on_epoch_begin(self, epoch, logs=None):
        self.t, self.c = time.perf_counter(), cpu_seconds()

    def on_epoch_end(self, epoch, logs=None):
        print(
            f"EPOCH {epoch + 1} seconds {time.perf_counter() - self.t:.1f} "
            f"cpu_seconds {cpu_seconds() - self.c:.1f} loss {logs['loss']:.4f} acc {logs['accuracy']:.4f} "
            f"val_acc {logs.get('val_accuracy', float('nan')):.4f}",
            flush=True,
        )


if mode == "keras":

    def old_augmenter(recipe):
        seed = recipe.seed
        seq = keras.Sequential(
            [
                keras.layers.RandomRotation(recipe.augment_rotation, fill_mode="constant", seed=seed),
                keras.layers.RandomTranslation(
                    recipe.augment_shift, recipe.augment_shift, fill_mode="constant", interpolation="nearest", seed=seed
                ),
                keras.layers.RandomZoom(recipe.augment_zoom, fill_mode="constant", seed=seed),
            ]
        )
        return lambda images: seq(images, training=True)

    T._augmenter = old_augmenter

orig_callbacks = T._callbacks
T._callbacks = lambda *a, **k: [*orig_callbacks(*a, **k), EpochTimer()]

overrides = {"epochs": str(epochs)}
if len(sys.argv) > 3:
    overrides["seed"] = sys.argv[3]
recipe = get_recipe("mnist-classifier").with_overrides(overrides)
t0 = time.perf_counter()
result = T.train(
    recipe, data_dir=None, repository=Path("/tmp/unused"), runs_dir=Path("runs/ab"), export=False, verbose=0
)
info = json.loads((result.run_dir / "training.json").read_text())
data = load_dataset("mnist", None)
model = keras.models.load_model(result.run_dir / "model.keras")
probs = model.predict(
    data.x_test.astype(np.float32)[..., None] / 255.0
    if data.x_test.ndim == 3
    else data.x_test.astype(np.float32) / 255.0,
    batch_size=500,
    verbose=0,
)
acc = float((np.argmax(probs, 1) == data.y_test.reshape(-1)).mean())
print(
    f"RESULT mode={mode} epochs={epochs} seed={recipe.seed} train_seconds={info['seconds']} "
    f"test_accuracy={acc:.4f} run={result.run_dir}"
)
