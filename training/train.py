"""Train a recipe, then export it into the model repository.

Reads top to bottom: seed, load data, split, build, compile, fit, rebuild in float32, export.
A run directory keeps the Keras checkpoint, the recipe and the history, so `pixelserve export` can redo the
export without training again.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from . import augment, models, optim
from . import layers as training_layers
from .data import Dataset, load_dataset
from .export import Normalization, export_model, validation_split
from .machine import cpu_name
from .recipes import Recipe

log = logging.getLogger(__name__)

CHECKPOINT = "model.keras"
RECIPE_FILE = "recipe.json"
HISTORY_FILE = "history.json"
TRAINING_FILE = "training.json"
BN_OFFSET = r"/beta$"  # the variable path of a batch-norm offset


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    model_dir: Path | None


def train(
    recipe: Recipe,
    *,
    data_dir: Path | None,
    repository: Path,
    runs_dir: Path,
    export: bool = True,
    version: int | None = None,
    verbose: int = 1,
) -> RunResult:
    if recipe.members != 1:
        raise ValueError(f"{recipe.name}: members={recipe.members}, but train() trains one network "
                         "(an ensemble, members > 1, is trained by ensemble.train_ensemble)")  # fmt: skip
    keras.utils.set_random_seed(recipe.seed)
    run_dir = new_run_dir(runs_dir / recipe.name)
    (run_dir / RECIPE_FILE).write_text(json.dumps(recipe.to_dict(), indent=2))

    data = load_dataset(recipe.dataset, data_dir)
    train_idx, val_idx = validation_split(len(data.x_train), recipe.validation_split, recipe.held_out_seed)
    x_train, y_train = data.x_train[train_idx], data.y_train[train_idx]
    x_val, y_val = data.x_train[val_idx], data.y_train[val_idx]
    normalization = _normalization(x_train) if recipe.task == "classify" else None
    log.info(
        "%s: %d train / %d validation / %d test images of %s",
        recipe.name,
        len(x_train),
        len(x_val),
        len(data.x_test),
        data.image_shape,
    )

    keras.mixed_precision.set_global_policy("mixed_bfloat16" if recipe.mixed_precision else "float32")
    started = time.perf_counter()
    net = build_net(recipe, data, normalization)
    core = net.model
    training_layers.fit_whitening(core, x_train[: recipe.whitening_samples].astype(np.float32) / 255.0)
    steps_per_epoch = int(np.ceil(len(x_train) / recipe.batch_size))
    core.compile(
        optimizer=_optimizer(recipe, steps_per_epoch),
        loss=_loss(recipe),
        metrics=["accuracy"] if recipe.task == "classify" else ["mse"],
    )
    train_ds = _pipeline(recipe, x_train, y_train, data, training=True)
    val_ds = _pipeline(recipe, x_val, y_val, data, training=False) if len(x_val) else None

    history = core.fit(
        train_ds,
        validation_data=val_ds,
        epochs=recipe.epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=_callbacks(recipe, run_dir, recipe.epochs * steps_per_epoch),
        verbose=verbose,
    )
    seconds = time.perf_counter() - started

    keras.mixed_precision.set_global_policy("float32")
    core = export_core(_inference_copy(net, recipe, data, normalization))
    core.save(run_dir / CHECKPOINT)
    history_dict = {k: [float(v) for v in values] for k, values in history.history.items()}
    (run_dir / HISTORY_FILE).write_text(json.dumps(history_dict, indent=2))
    training_info = {
        "seconds": round(seconds, 1),
        "epochs_run": len(history_dict.get("loss", [])),
        "seconds_per_epoch": round(float(np.median(history_dict["seconds"])), 1) if "seconds" in history_dict else None,
        "hardware": hardware(),
        "train_samples": len(x_train),
        "validation_samples": len(x_val),
        "mixed_precision": "bfloat16" if recipe.mixed_precision else "float32",
    }
    (run_dir / TRAINING_FILE).write_text(json.dumps(training_info, indent=2))
    model_dir = None
    if export:
        model_dir = export_model(
            core,
            recipe,
            data,
            repository,
            normalization=normalization,
            history=history_dict,
            training_info=training_info,
            version=version,
            data_dir=data_dir,
        )
    return RunResult(run_dir, model_dir)


def new_run_dir(parent: Path) -> Path:
    """A fresh run directory named for the time; runs started in the same second (ensemble members on tiny
    data) get a suffix instead of overwriting each other's checkpoints."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000):
        run_dir = parent / (stamp if attempt == 1 else f"{stamp}-{attempt}")
        try:
            run_dir.mkdir()
        except FileExistsError:
            continue
        return run_dir
    raise FileExistsError(f"no free run directory for {stamp} in {parent}")


def build_net(
    recipe: Recipe, data: Dataset, normalization: Normalization | None, *, inference: bool = False
) -> models.Net:
    """The float [0,1] network of the recipe, built under the current dtype policy.

    `inference` drops training-only parts (activity regularisation), which would otherwise end up in the graph.
    """
    if recipe.task == "classify":
        norm = {"mean": normalization.mean, "std": normalization.std} if normalization else {}
        return models.CLASSIFIERS[recipe.model](data.image_shape, len(data.labels), **recipe.model_args, **norm)
    args = dict(recipe.model_args)
    for penalty in ("l1", "contractive"):
        if inference and penalty in args:
            args[penalty] = 0.0
    return models.AUTOENCODERS[recipe.model](data.image_shape, **args)


def export_core(net: models.Net) -> keras.Model:
    """One graph with every output (reconstruction and latent), so the export computes the encoder once."""
    if net.encoder is None:
        return net.model
    return keras.Model(net.model.inputs, [net.model.outputs[0], net.encoder.outputs[0]], name=net.model.name)


def _inference_copy(
    trained: models.Net, recipe: Recipe, data: Dataset, normalization: Normalization | None
) -> models.Net:
    """The same architecture in float32, for inference, with the trained weights.

    Under mixed precision the variables are float32 already, so the copy is exact.
    """
    fresh = build_net(recipe, data, normalization, inference=True)
    fresh.model.set_weights(trained.model.get_weights())
    return fresh


def _normalization(x: np.ndarray) -> Normalization:
    pixels = x.reshape(-1, x.shape[-1]).astype(np.float64) / 255.0
    return Normalization(
        mean=[round(float(v), 5) for v in pixels.mean(0)], std=[round(float(v), 5) for v in pixels.std(0)]
    )


def _optimizer(recipe: Recipe, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    total = max(1, recipe.epochs * steps_per_epoch)
    if recipe.schedule == "constant":
        lr = recipe.learning_rate
    elif recipe.schedule == "triangular":
        lr = optim.Triangular(
            recipe.learning_rate,
            total,
            int(total * recipe.warmup_fraction),
            start=recipe.lr_start_fraction,
            end=recipe.lr_end_fraction,
        )
    else:
        warmup = int(total * recipe.warmup_fraction) if recipe.schedule == "onecycle" else 0
        lr = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=recipe.learning_rate / 25 if warmup else recipe.learning_rate,
            decay_steps=total - warmup,
            warmup_target=recipe.learning_rate if warmup else None,
            warmup_steps=warmup,
        )
    if recipe.optimizer == "sgd":
        multipliers = {BN_OFFSET: recipe.bias_lr_multiplier} if recipe.bias_lr_multiplier != 1 else {}
        return optim.ScaledSGD(
            lr,
            momentum=recipe.momentum,
            nesterov=True,
            weight_decay=recipe.weight_decay or None,
            lr_multipliers=multipliers,
        )
    if recipe.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=recipe.weight_decay)
    return keras.optimizers.Adam(lr)


def _loss(recipe: Recipe):
    if recipe.task == "classify":
        return keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing)
    return "mse"


class EpochSeconds(keras.callbacks.Callback):
    """Adds each epoch's wall seconds to its logs, so log.csv and history.json say what an epoch cost."""

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["seconds"] = round(time.perf_counter() - self.started, 2)


def _callbacks(recipe: Recipe, run_dir: Path, total_steps: int) -> list[keras.callbacks.Callback]:
    callbacks: list[keras.callbacks.Callback] = [EpochSeconds(), keras.callbacks.CSVLogger(str(run_dir / "log.csv"))]
    if recipe.lookahead_every > 0:
        callbacks.append(optim.Lookahead(total_steps, recipe.lookahead_every, recipe.lookahead_decay))
    if recipe.early_stopping_patience > 0 and recipe.validation_split > 0:
        callbacks.append(
            keras.callbacks.EarlyStopping(patience=recipe.early_stopping_patience, restore_best_weights=True)
        )
        callbacks.append(keras.callbacks.ModelCheckpoint(str(run_dir / "best.keras"), save_best_only=True))
    return callbacks


def _pipeline(recipe: Recipe, x: np.ndarray, y: np.ndarray, data: Dataset, *, training: bool) -> tf.data.Dataset:
    """uint8 arrays -> float batches; augmentation for classifiers, noise for denoisers, on the fly.

    Training data repeats without end (fit counts steps_per_epoch), and each element carries the pass it belongs
    to, which the alternating flip needs.
    """
    phase = np.random.default_rng(recipe.seed).integers(0, 2, len(x))  # alternating flip: who starts mirrored
    if training:
        ds = _shuffled_batches(x, y, phase, recipe.batch_size, recipe.seed)
    else:
        ds = tf.data.Dataset.from_tensor_slices((x, y, phase)).batch(recipe.batch_size)
        ds = ds.map(lambda images, labels, phase: (images, labels, phase, tf.zeros_like(phase, tf.int64)))
    augment_more = _augmenter(recipe) if training else None
    num_classes = len(data.labels)

    def classify(images, labels, phase, epoch):
        images = tf.cast(images, tf.float32) / 255.0
        if training:
            images = _flip_and_translate(recipe, images, phase, epoch)
        if augment_more is not None:
            images = augment_more(images)
        return images, tf.one_hot(labels, num_classes)

    def reconstruct(images, _labels, _phase, _epoch):
        clean = tf.cast(images, tf.float32) / 255.0
        if training and recipe.augment_dihedral:
            clean = augment.random_dihedral(clean)
        if recipe.noise_sigma <= 0:
            return clean, clean
        noisy = clean + tf.random.normal(tf.shape(clean), stddev=recipe.noise_sigma)
        return tf.round(tf.clip_by_value(noisy, 0.0, 1.0) * 255.0) / 255.0, clean

    mapper = classify if recipe.task == "classify" else reconstruct
    return ds.map(mapper, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _shuffled_batches(x: np.ndarray, y: np.ndarray, phase: np.ndarray, batch_size: int, seed: int) -> tf.data.Dataset:
    """Endless full batches of (images, labels, phase, pass number), reshuffled every pass.

    Only the indices go through tf.data's shuffle, one scalar each; images are gathered a batch at a time. Shuffling
    the images themselves cost a few ms of CPU per batch, taken from the train step on 2 cores. The order is the same:
    the shuffle draws its permutation from the seed alone.
    """
    n = len(x)
    images, labels, phases = tf.constant(x), tf.constant(y), tf.constant(phase)

    def gather(batch: tf.Tensor, index: tf.Tensor) -> tuple[tf.Tensor, ...]:
        position = batch * batch_size + tf.range(batch_size, dtype=tf.int64)  # every batch is full: no end
        return tf.gather(images, index), tf.gather(labels, index), tf.gather(phases, index), position // n

    order = tf.data.Dataset.range(n).shuffle(n, seed=seed, reshuffle_each_iteration=True).repeat()
    return order.batch(batch_size).enumerate().map(gather)


def _flip_and_translate(recipe: Recipe, images: tf.Tensor, phase: tf.Tensor, epoch: tf.Tensor) -> tf.Tensor:
    if recipe.augment_flip_alternating:
        images = augment.alternating_mirror(images, phase, epoch)
    elif recipe.augment_flip:
        images = augment.random_mirror(images)
    return augment.random_translate(images, recipe.augment_crop_pad)


def _augmenter(recipe: Recipe) -> Callable[[tf.Tensor], tf.Tensor] | None:
    """Resampling augmentations (rotation, fractional shift, zoom, shear) as one affine resampling per batch.

    Replaces a Sequential of Keras' RandomRotation, RandomTranslation and RandomZoom (same ranges), which resampled
    every batch three times; one resampling blurs less and costs less of the 2 CPU cores the train step also needs.
    Those layers, each seeded with the recipe seed, drew the same random numbers, so an image's rotation and zoom
    were tied to each other; here every parameter is drawn on its own.
    """
    if not (recipe.augment_rotation or recipe.augment_shift or recipe.augment_zoom or recipe.augment_shear):
        return None
    return functools.partial(
        augment.random_affine,
        rotation=recipe.augment_rotation,
        shift=recipe.augment_shift,
        zoom=recipe.augment_zoom,
        shear=recipe.augment_shear,
    )


def hardware() -> str:
    cpu = cpu_name()
    gpus = tf.config.list_physical_devices("GPU")
    return f"{os.cpu_count()} CPU cores ({cpu})" + (f", {len(gpus)} GPU" if gpus else ", no GPU")


def export_run(
    run_dir: Path,
    data_dir: Path | None,
    repository: Path,
    version: int | None = None,
    changes: dict[str, str] | None = None,
) -> Path:
    """Export a finished run again from its checkpoint, recipe, history and training facts; `changes`: export-time
    recipe fields (test-time augmentation, parity) to set differently from the run's."""
    recipe = Recipe.from_dict(json.loads((run_dir / RECIPE_FILE).read_text())).with_overrides(changes or {})
    core = keras.models.load_model(run_dir / CHECKPOINT)
    history = json.loads((run_dir / HISTORY_FILE).read_text())
    training_info = json.loads((run_dir / TRAINING_FILE).read_text())
    return export_trained(core, recipe, data_dir, repository, history, training_info, version)


def export_trained(
    core: keras.Model,
    recipe: Recipe,
    data_dir: Path | None,
    repository: Path,
    history: dict[str, list[float]],
    training_info: dict,
    version: int | None,
) -> Path:
    """Export a trained float32 network read back from disk; its normalisation statistics come from its graph."""
    stats = models.normalization_of(core)
    return export_model(
        core,
        recipe,
        load_dataset(recipe.dataset, data_dir),
        repository,
        normalization=Normalization(*stats) if stats else None,
        history=history,
        training_info=training_info,
        version=version,
        data_dir=data_dir,
    )
