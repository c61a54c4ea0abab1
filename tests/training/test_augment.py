"""The one-resampling affine augmentation (issue 23), checked against exact pixel moves and its ranges, and the
profile that measures what augmentation costs."""

from __future__ import annotations

import math
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from pixelserve.training import augment
from pixelserve.training.epoch_profile import profile
from pixelserve.training.recipes import get_recipe
from pixelserve.training.train import _augmenter

NONE = {"angle": 0.0, "shift_x": 0.0, "shift_y": 0.0, "zoom": 1.0, "shear": 0.0}


def _transform(images: np.ndarray, interpolation: str = "bilinear", **params: float) -> np.ndarray:
    """`images` resampled by one transform (the same for every image) made from `params` over the identity."""
    batch, height, width = images.shape[:3]
    values = {k: tf.fill((batch,), float(v)) for k, v in {**NONE, **params}.items()}
    transforms = augment.affine_transforms(values, height, width)
    return augment.apply_transforms(tf.constant(images), transforms, interpolation).numpy()


def _images(shape: tuple[int, ...] = (4, 8, 8, 2), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape).astype(np.float32)


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_affine_keeps_a_zero_transform_exact(interpolation: str) -> None:
    images = _images()
    np.testing.assert_array_equal(_transform(images, interpolation), images)
    np.testing.assert_array_equal(augment.random_affine(tf.constant(images)).numpy(), images)


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_affine_shift_moves_content_right_and_down_and_fills_with_zero(interpolation: str) -> None:
    images = _images((3, 4, 8, 1))
    shifted = _transform(images, interpolation, shift_x=2 / 8, shift_y=1 / 4)  # 2 px right, 1 px down
    np.testing.assert_allclose(shifted[:, 1:, 2:], images[:, :-1, :-2], atol=1e-6)
    assert not shifted[:, :1].any() and not shifted[:, :, :2].any()


def test_affine_quarter_turn_is_a_rot90_about_the_centre() -> None:
    images = _images((2, 7, 7, 1))
    turned = _transform(images, "nearest", angle=math.pi / 2)
    np.testing.assert_array_equal(turned, np.rot90(images, k=1, axes=(1, 2)))


def test_affine_shear_slides_each_row_by_its_distance_from_the_centre() -> None:
    images = _images((1, 5, 9, 1))
    sheared = _transform(images, "nearest", shear=1.0)  # output (x, y) samples input (x + y - 2, y)
    np.testing.assert_array_equal(sheared[0, 2], images[0, 2])
    np.testing.assert_array_equal(sheared[0, 3, :-1], images[0, 3, 1:])
    np.testing.assert_array_equal(sheared[0, 0, 2:], images[0, 0, :-2])


def test_affine_zoom_above_one_zooms_out_about_the_centre() -> None:
    images = np.zeros((1, 9, 9, 1), np.float32)
    images[0, 2:7, 2:7] = 1.0  # a 5x5 square in the middle
    zoomed = _transform(images, "nearest", zoom=2.0)  # output pixel c + d samples input c + 2d
    assert zoomed[0, 4, 4] == 1.0 and zoomed[0, 3:6, 3:6].all()
    assert zoomed.sum() < images.sum() and not zoomed[0, 2].any()


def test_affine_parameters_stay_in_their_ranges_and_fill_them() -> None:
    params = {
        k: v.numpy() for k, v in augment.affine_parameters(4096, rotation=0.03, shift=0.1, zoom=0.1, shear=0.2).items()
    }
    limits = {"angle": 0.03 * 2 * math.pi, "shift_x": 0.1, "shift_y": 0.1, "shear": 0.2}
    for name, limit in limits.items():
        assert np.abs(params[name]).max() <= limit
        assert np.abs(params[name]).max() > 0.95 * limit and abs(params[name].mean()) < 0.1 * limit
    assert 0.9 <= params["zoom"].min() < 0.91 and 1.09 < params["zoom"].max() <= 1.1
    unused = augment.affine_parameters(8, rotation=0.03)
    assert not unused["shear"].numpy().any() and (unused["zoom"].numpy() == 1.0).all()


@pytest.mark.parametrize("shape", [(5, 28, 28, 1), (3, 32, 32, 3)])
def test_random_affine_keeps_shape_dtype_and_value_range(shape: tuple[int, ...]) -> None:
    images = tf.constant(_images(shape))
    out = augment.random_affine(images, rotation=0.03, shift=0.1, zoom=0.1, shear=0.1)
    assert out.shape == images.shape and out.dtype == tf.float32
    assert float(tf.reduce_min(out)) >= 0.0 and float(tf.reduce_max(out)) <= 1.0
    assert not np.array_equal(out.numpy(), images.numpy())


def test_random_affine_draws_a_different_transform_per_image() -> None:
    images = tf.constant(np.repeat(_images((1, 16, 16, 1)), 8, axis=0))
    out = augment.random_affine(images, rotation=0.05, shift=0.1).numpy()
    assert len({out[i].tobytes() for i in range(8)}) == 8


def test_mnist_recipe_augments_with_one_affine_resampling() -> None:
    recipe = get_recipe("mnist-classifier")
    augmenter = _augmenter(recipe)
    assert augmenter is not None and augmenter.func is augment.random_affine
    assert augmenter.keywords == {"rotation": 0.03, "shift": 0.1, "zoom": 0.1, "shear": 0.0}
    assert _augmenter(get_recipe("cifar10-tutorial-cnn")) is None


def test_random_dihedral_shows_only_and_all_eight_views_of_a_square_image() -> None:
    image = _images((1, 5, 5, 1))[0]
    views = {np.rot90(m, k).tobytes() for m in (image, image[:, ::-1]) for k in range(4)}
    assert len(views) == 8
    out = augment.random_dihedral(tf.constant(np.repeat(image[None], 256, axis=0))).numpy()
    seen = {o.tobytes() for o in out}
    assert seen <= views and len(seen) == 8


def test_profile_reports_pipeline_and_step_milliseconds_per_batch(tiny_data_dir: Path) -> None:
    recipe = get_recipe("mnist-classifier").with_overrides({"batch_size": "16"})
    report = profile(recipe, tiny_data_dir, steps=3)
    assert set(report) == {"pipeline_plain_ms", "pipeline_augmented_ms", "train_step_ms", "fit_augmented_ms"}
    assert all(value > 0 for value in report.values())
    assert keras.mixed_precision.global_policy().name == "float32"  # the recipe's bf16 policy does not leak
