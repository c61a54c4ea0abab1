"""The pieces the quality recipes are built from, each checked against an independent computation."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from pixelserve.training import augment, models, optim
from pixelserve.training import layers as training_layers
from pixelserve.training import train as train_module
from pixelserve.training.analysis import code_activity, encoder_jacobian_norm
from pixelserve.training.export import serving_model
from pixelserve.training.recipes import Recipe

REPOSITORY = Path(__file__).resolve().parents[2] / "models"


def _correlated_images(n: int = 64, size: int = 8, seed: int = 0) -> np.ndarray:
    """Smooth colour images: neighbouring pixels and channels correlate, as in photos."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, size + 1, size + 1, 1))
    smooth = (base[:, 1:, 1:] + base[:, :-1, 1:] + base[:, 1:, :-1]) / 3
    return (smooth * np.array([1.0, 0.8, 0.6]) + 0.2 * rng.normal(size=(n, size, size, 3))).astype(np.float32)


def test_whitening_layer_decorrelates_its_training_patches() -> None:
    images = _correlated_images()
    inputs = keras.Input(images.shape[1:])
    layer = training_layers.Whitening(2, eps=1e-6)
    model = keras.Model(inputs, layer(inputs))
    training_layers.fit_whitening(model, images)
    features = np.asarray(model(images)).reshape(-1, 24)[:, :12]  # the first half; the rest is its negative
    covariance = features.T @ features / len(features)
    np.testing.assert_allclose(covariance, np.eye(12), atol=2e-3)
    np.testing.assert_allclose(np.asarray(model(images))[..., 12:], -np.asarray(model(images))[..., :12], atol=1e-5)


def test_partial_dirac_conv_passes_its_input_through() -> None:
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 4)).astype(np.float32)
    conv = keras.layers.Conv2D(
        7, 3, padding="same", use_bias=False, kernel_initializer=training_layers.PartialDirac(seed=1)
    )
    y = np.asarray(conv(x))
    np.testing.assert_allclose(y[..., :4], x, atol=1e-6)
    assert np.abs(y[..., 4:]).mean() > 0.05  # the other filters are random, not zero


def test_random_translate_is_a_whole_pixel_shift_with_reflected_borders() -> None:
    images = np.random.default_rng(0).random((16, 6, 5, 2)).astype(np.float32)
    shifted = augment.random_translate(tf.constant(images), 2).numpy()
    padded = np.pad(images, [(0, 0), (2, 2), (2, 2), (0, 0)], mode="reflect")
    offsets = set()
    for i in range(len(images)):
        crops = {(dy, dx): padded[i, dy : dy + 6, dx : dx + 5] for dy in range(5) for dx in range(5)}
        matches = [offset for offset, crop in crops.items() if np.array_equal(shifted[i], crop)]
        assert len(matches) == 1, f"image {i} is no crop of its padded self"
        offsets.add(matches[0])
    assert len(offsets) > 4  # offsets vary between images


def test_alternating_mirror_shows_each_image_both_ways_in_two_epochs() -> None:
    images = tf.constant(np.random.default_rng(0).random((32, 4, 4, 1)), tf.float32)
    phase = tf.constant(np.random.default_rng(1).integers(0, 2, 32))
    mirrored = tf.reverse(images, axis=[2]).numpy()
    for epoch in (0, 1, 6):
        first = augment.alternating_mirror(images, phase, tf.constant(epoch, tf.int64)).numpy()
        second = augment.alternating_mirror(images, phase, tf.constant(epoch + 1, tf.int64)).numpy()
        for a, b, m in zip(first, second, mirrored, strict=True):
            assert np.array_equal(a, m) != np.array_equal(b, m)
    started_mirrored = np.mean([np.array_equal(a, m) for a, m in zip(first, mirrored, strict=True)])
    assert 0.2 < started_mirrored < 0.8


def test_triangular_schedule_rises_then_falls_linearly() -> None:
    schedule = optim.Triangular(2.0, total_steps=100, warmup_steps=20, start=0.2, end=0.1)
    values = [float(schedule(s)) for s in (0, 10, 20, 60, 100, 150)]
    np.testing.assert_allclose(values, [0.4, 1.2, 2.0, 2.0 - 1.8 * 40 / 80, 0.2, 0.2], rtol=1e-6)


def test_scaled_sgd_multiplies_the_step_of_matching_variables_but_not_their_decay() -> None:
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.BatchNormalization(scale=False)])
    beta = model.layers[1].beta
    kernel = model.layers[0].kernel
    beta.assign(np.ones(2, np.float32))
    optimizer = optim.ScaledSGD(0.1, momentum=0.0, weight_decay=0.5, lr_multipliers={r"/beta$": 8.0})
    before_beta, before_kernel = np.array(beta), np.array(kernel)
    optimizer.apply([tf.ones_like(v) for v in model.trainable_variables], model.trainable_variables)
    # kernel: decay 0.1 * 0.5 * w, then the step 0.1 * 1;  beta: the same decay, then 8 times the step
    np.testing.assert_allclose(np.array(kernel), before_kernel * 0.95 - 0.1, rtol=1e-6)
    np.testing.assert_allclose(np.array(beta), before_beta * 0.95 - 0.8, rtol=1e-6)


def test_lookahead_pulls_weights_to_the_slow_copy() -> None:
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, use_bias=False)])
    model.layers[0].kernel.assign(np.zeros((2, 1), np.float32))
    callback = optim.Lookahead(total_steps=2, every=1, decay=0.5)
    callback.set_model(model)
    callback.on_train_begin()
    model.layers[0].kernel.assign(np.full((2, 1), 8.0, np.float32))  # the fast weights after step 1
    callback.on_train_batch_end(0)  # decay 0.5 * (1/2)^3 = 1/16: slow = 0 + 15/16 * 8
    np.testing.assert_allclose(np.array(model.layers[0].kernel), 7.5)
    model.layers[0].kernel.assign(np.full((2, 1), 9.5, np.float32))
    callback.on_train_batch_end(1)  # decay 0.5: slow = 7.5 + 0.5 * 2
    np.testing.assert_allclose(np.array(model.layers[0].kernel), 8.5)


def test_tta_graph_is_the_weighted_mean_over_mirrored_and_shifted_views() -> None:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    core = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(x)))
    recipe = Recipe(name="t", task="classify", dataset="mnist", model="x", tta_flip=True, tta_translate=1)
    images = np.random.default_rng(0).integers(0, 256, (5, 6, 6, 1)).astype(np.uint8)
    got = np.asarray(serving_model(core, recipe, (6, 6, 1))(images)["probabilities"])

    x = images.astype(np.float32) / 255.0
    padded = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="reflect")

    def mirrored_mean(v: np.ndarray) -> np.ndarray:
        return (np.asarray(core(v)) + np.asarray(core(v[:, :, ::-1]))) / 2

    expected = 0.5 * mirrored_mean(x) + 0.25 * (mirrored_mean(padded[:, :6, :6]) + mirrored_mean(padded[:, 2:, 2:]))
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_dihedral_self_ensemble_averages_the_eight_views_turned_back() -> None:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    core = keras.Model(inputs, keras.layers.Conv2D(3, 3, padding="same", activation="sigmoid")(inputs))
    recipe = Recipe(name="t", task="denoise", dataset="cifar10", model="x", tta_dihedral=True)
    images = np.random.default_rng(0).integers(0, 256, (4, 6, 6, 3)).astype(np.uint8)
    got = serving_model(core, recipe, (6, 6, 3))(images)

    x = images.astype(np.float32) / 255.0
    outputs = []
    for turns in range(4):  # the 8 views as quarter turns of the image and of its mirror, each turned back
        for view in (x, x[:, :, ::-1]):
            out = np.asarray(core(np.rot90(view, turns, axes=(1, 2)).copy()))
            out = np.rot90(out, -turns, axes=(1, 2))
            outputs.append(out if view is x else out[:, :, ::-1])
    expected = np.mean(outputs, axis=0)
    np.testing.assert_allclose(np.asarray(got["reconstruction"]), expected, atol=1e-6)
    assert not np.allclose(expected, np.asarray(core(x)), atol=1e-3), "the views must matter for this check"
    error = np.mean((expected - x) ** 2, axis=(1, 2, 3))
    np.testing.assert_allclose(np.asarray(got["reconstruction_error"]), error, atol=1e-6)


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_contractive_penalty_is_the_squared_frobenius_norm_of_the_jacobian(activation: str) -> None:
    layer = training_layers.ContractiveDense(5, contractive=1.0, activation=activation)
    x = tf.constant(np.random.default_rng(0).normal(size=(4, 7)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        code = layer(x)
    expected = tf.reduce_sum(tf.square(tape.batch_jacobian(code, x)), axis=(1, 2)).numpy()
    np.testing.assert_allclose(np.asarray(layer.squared_jacobian_norm(code)), expected, rtol=1e-5)


def test_encoder_jacobian_norm_of_a_linear_encoder_is_its_weight_norm() -> None:
    inputs = keras.Input((4, 4, 1))
    dense = keras.layers.Dense(3, use_bias=False)
    encoder = keras.Model(inputs, dense(keras.layers.Flatten()(inputs)))
    images = np.random.default_rng(0).integers(0, 256, (10, 4, 4, 1)).astype(np.uint8)
    # d code / d x with x = pixels / 255 is the weight matrix itself
    assert encoder_jacobian_norm(encoder, images, batch_size=4) == pytest.approx(
        float(np.linalg.norm(np.array(dense.kernel))), rel=1e-5
    )


@pytest.mark.parametrize("spec", sorted(REPOSITORY.glob("*/*/model.json")), ids=lambda p: p.parent.parent.name)
def test_recipes_stored_in_committed_models_still_read_back(spec: Path) -> None:
    """Re-measuring a committed model rebuilds its recipe from model.json, written before the new fields."""
    stored = json.loads(spec.read_text())["recipe"]
    recipe = Recipe.from_dict(stored)
    again = json.loads(json.dumps(recipe.to_dict()))
    assert {key: again[key] for key in stored} == stored, "every stored field reads back as it was"
    added = [f for f in dataclasses.fields(Recipe) if f.name not in stored]
    for f in added:  # fields added after the model was exported keep their defaults
        key = f.name
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
        assert again[key] == json.loads(json.dumps(default)), key


def test_input_normalisation_and_whitening_compute_in_float32_under_a_bfloat16_policy() -> None:
    images = np.random.default_rng(0).random((4, 32, 32, 3)).astype(np.float32)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = models.airbench((32, 32, 3), 10, widths=(8, 8, 8), mean=[0.5, 0.4, 0.3], std=[0.25, 0.2, 0.3]).model
    finally:
        keras.mixed_precision.set_global_policy("float32")
    training_layers.fit_whitening(model, images)
    for name in (models.NORMALIZE_LAYER, "whiten"):
        layer = model.get_layer(name)
        assert layer.compute_dtype == "float32" and layer.output.dtype == "float32"
    assert {lyr.compute_dtype for lyr in model.layers if isinstance(lyr, keras.layers.Conv2D)} == {"bfloat16"}
    layer = model.get_layer("whiten")
    whitened = np.asarray(keras.Model(model.input, layer.output)(images))
    normalised = ((images - np.array([0.5, 0.4, 0.3])) / np.array([0.25, 0.2, 0.3])).astype(np.float32)
    expected = tf.nn.conv2d(normalised, np.asarray(layer.kernel), 1, "VALID").numpy() + np.asarray(layer.bias)
    np.testing.assert_allclose(whitened, expected, rtol=1e-5, atol=1e-4)


def test_code_activity_counts_units_above_the_threshold() -> None:
    codes = np.array([[0.0, 0.5, 0.005, -0.2], [0.0, 0.0, 0.02, 0.0]], np.float32)
    activity = code_activity(codes, threshold=0.01)
    assert activity["active_share"] == 3 / 8 and activity["active_units_per_image"] == 1.5
    assert activity["live_unit_share"] == 3 / 4  # the first unit never fires
    np.testing.assert_allclose(activity["mean_abs_activation"], 0.725 / 8)


def test_shuffled_batches_are_the_element_shuffle_with_each_images_pass_number() -> None:
    """The training stream gathers images by shuffled index; it must equal shuffling the images themselves, pass
    after pass, with every batch full and each image tagged with the pass it belongs to (the alternating flip)."""
    n, batch_size, seed = 10, 4, 7
    x = np.arange(n * 4, dtype=np.uint8).reshape(n, 2, 2)
    y = np.arange(n, dtype=np.uint8)
    phase = np.random.default_rng(0).integers(0, 2, n)
    got = list(train_module._shuffled_batches(x, y, phase, batch_size, seed).take(8).as_numpy_iterator())

    elements = tf.data.Dataset.from_tensor_slices((x, y, phase)).shuffle(n, seed=seed, reshuffle_each_iteration=True)
    reference = elements.repeat().enumerate().map(lambda i, item: (*item, i // n)).batch(batch_size).take(8)
    expected = list(reference.as_numpy_iterator())
    assert len(got) == len(expected) == 8
    for g, e in zip(got, expected, strict=True):
        for got_part, expected_part in zip(g, e, strict=True):
            np.testing.assert_array_equal(got_part, expected_part)
    passes = np.concatenate([batch[3] for batch in got])
    assert passes.tolist() == [i // n for i in range(8 * batch_size)]  # 32 images: three passes and a bit
    for p in range(3):  # each pass shows every image once
        assert sorted(np.concatenate([b[1] for b in got])[passes == p].tolist()) == list(range(n))
