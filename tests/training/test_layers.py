"""pixelserve.training.layers.FusedBatchNormalization against Keras' own BatchNormalization: same outputs,
gradients and moving statistics when training, the very same graph at inference, checkpoints that load."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from pixelserve.training.layers import FusedBatchNormalization

CONFIGS = [
    {},  # the recipes' conv-BN-ReLU
    {"momentum": 0.6, "epsilon": 1e-12, "scale": False},  # airbench
    {"center": False, "momentum": 0.9},
]


@pytest.fixture
def bf16_policy() -> Iterator[None]:
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


def twins(config: dict, channels: int = 6, seed: int = 3) -> tuple[keras.layers.Layer, keras.layers.Layer]:
    """A Keras BatchNormalization and a fused one with the same random weights and statistics."""
    keras_bn, fused = keras.layers.BatchNormalization(**config), FusedBatchNormalization(**config)
    for layer in (keras_bn, fused):
        layer.build((None, 5, 7, channels))
    rng = np.random.default_rng(seed)
    weights = [rng.uniform(0.5, 1.5, w.shape).astype(np.float32) for w in keras_bn.get_weights()]
    keras_bn.set_weights(weights)
    fused.set_weights(weights)
    return keras_bn, fused


def images(shape: tuple[int, ...] = (8, 5, 7, 6), seed: int = 4) -> tf.Tensor:
    return tf.constant(np.random.default_rng(seed).normal(2.0, 3.0, shape).astype(np.float32))


def trained_step(layer: keras.layers.Layer, x: tf.Tensor, dtype: tf.DType) -> tuple[np.ndarray, list[np.ndarray]]:
    """The layer's training output and the gradients of a weighted sum of it, input first."""
    x = tf.cast(x, dtype)
    weights = tf.cast(tf.linspace(-1.0, 2.0, int(np.prod(x.shape))), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
        loss = tf.reduce_sum(tf.reshape(tf.cast(y, tf.float32), [-1]) * weights)
    grads = tape.gradient(loss, [x, *layer.trainable_variables])
    return tf.cast(y, tf.float32).numpy(), [tf.cast(g, tf.float32).numpy() for g in grads]


@pytest.mark.parametrize("config", CONFIGS)
def test_training_matches_keras_outputs_gradients_and_moving_statistics(config: dict) -> None:
    keras_bn, fused = twins(config)
    x = images()
    expected, expected_grads = trained_step(keras_bn, x, tf.float32)
    got, got_grads = trained_step(fused, x, tf.float32)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert len(got_grads) == len(expected_grads)
    for g, e in zip(got_grads, expected_grads, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-3, atol=1e-3)
    for g, e in zip(fused.non_trainable_weights, keras_bn.non_trainable_weights, strict=True):
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-5, atol=1e-6)  # biased variance, Keras momentum


def test_bfloat16_training_stays_within_bfloat16_rounding_of_keras(bf16_policy: None) -> None:
    keras_bn, fused = twins({})
    assert fused.compute_dtype == "bfloat16"
    x = images((16, 5, 7, 6))
    expected, _ = trained_step(keras_bn, x, tf.bfloat16)
    got, _ = trained_step(fused, x, tf.bfloat16)
    np.testing.assert_allclose(got, expected, atol=0.03)  # outputs ~N(0, 1), bf16 keeps 8 bits
    np.testing.assert_allclose(fused.moving_variance.numpy(), keras_bn.moving_variance.numpy(), rtol=1e-3)
    assert FusedBatchNormalization()(tf.cast(x, tf.bfloat16), training=True).dtype == tf.bfloat16


def fused_ops(layer: keras.layers.Layer, x: tf.Tensor, training: bool) -> list[str]:
    graph = tf.function(lambda t: layer(t, training=training)).get_concrete_function(x).graph
    return [op.type for op in graph.get_operations() if op.type.startswith("FusedBatchNorm")]


def test_training_runs_one_fused_op_and_inference_is_keras_own_graph() -> None:
    keras_bn, fused = twins({})
    x = images()
    assert fused_ops(fused, x, training=True) == ["FusedBatchNormV3"]
    assert fused_ops(fused, x, training=False) == []
    np.testing.assert_array_equal(fused(x, training=False).numpy(), keras_bn(x, training=False).numpy())


def test_frozen_layer_and_flat_inputs_fall_back_to_keras() -> None:
    keras_bn, fused = twins({})
    keras_bn.trainable = fused.trainable = False
    x = images()
    np.testing.assert_array_equal(fused(x, training=True).numpy(), keras_bn(x, training=True).numpy())
    dense_keras, dense_fused = keras.layers.BatchNormalization(), FusedBatchNormalization()
    flat = tf.reshape(x, [8, -1])
    np.testing.assert_allclose(dense_fused(flat, training=True).numpy(), dense_keras(flat, training=True).numpy(),
                               rtol=1e-5, atol=1e-5)  # fmt: skip


def test_checkpoint_with_the_layer_loads_back(tmp_path: Path) -> None:
    inputs = keras.Input((5, 7, 6))
    model = keras.Model(inputs, FusedBatchNormalization(momentum=0.6, scale=False)(inputs))
    model(images(), training=True)  # moves the statistics off their initial values
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.layers[-1], FusedBatchNormalization)
    assert loaded.layers[-1].get_config() == model.layers[-1].get_config()
    x = images(seed=9)
    np.testing.assert_array_equal(loaded(x, training=False).numpy(), model(x, training=False).numpy())
