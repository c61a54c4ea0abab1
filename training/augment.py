"""Batch augmentations written as plain TensorFlow ops, for the tf.data pipeline (never exported).

A translation of whole pixels with reflected borders and a mirror need no resampling, so those are exact and
cheap; rotation, fractional shift, zoom and shear are composed into one affine matrix per image and resampled
once (random_affine), instead of once per Keras preprocessing layer.
"""

from __future__ import annotations

import math

import tensorflow as tf


def mirror_where(images: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Mirror (left-right) the images of an NHWC batch where the boolean `mask` (N,) is true."""
    return tf.where(tf.reshape(mask, (-1, 1, 1, 1)), tf.reverse(images, axis=[2]), images)


def alternating_mirror(images: tf.Tensor, phase: tf.Tensor, epoch: tf.Tensor) -> tf.Tensor:
    """airbench's flip: image i is mirrored in epochs where (phase_i + epoch) is odd.

    Half the images start mirrored (a fixed random `phase` bit each), and every other epoch all are flipped, so
    any two consecutive epochs show each image both ways; random flips repeat a view half the time.
    """
    return mirror_where(images, tf.math.floormod(phase + epoch, 2) == 1)


def random_mirror(images: tf.Tensor) -> tf.Tensor:
    return mirror_where(images, tf.random.uniform(tf.shape(images)[:1]) < 0.5)


def random_translate(images: tf.Tensor, pad: int) -> tf.Tensor:
    """Shift each image by a random whole number of pixels in [-pad, pad] on both axes, borders reflected.

    The same as a random crop of the reflect-padded image, done with two batched gathers.
    """
    if pad <= 0:
        return images
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    dy = tf.random.uniform((batch, 1), 0, 2 * pad + 1, dtype=tf.int32)
    dx = tf.random.uniform((batch, 1), 0, 2 * pad + 1, dtype=tf.int32)
    rows = tf.gather(padded, dy + tf.range(height)[None, :], axis=1, batch_dims=1)
    return tf.gather(rows, dx + tf.range(width)[None, :], axis=2, batch_dims=1)


def affine_parameters(
    batch: tf.Tensor | int,
    *,
    rotation: float = 0.0,
    shift: float = 0.0,
    zoom: float = 0.0,
    shear: float = 0.0,
) -> dict[str, tf.Tensor]:
    """One random draw per image, in the ranges Keras' RandomRotation / RandomTranslation / RandomZoom use.

    angle: radians in +-rotation * 2pi (rotation is a fraction of a full turn); shift_x, shift_y: fractions of the
    width / height in +-shift; zoom: a scale in [1 - zoom, 1 + zoom] (above 1 zooms out, as Keras); shear: a
    horizontal shear factor in +-shear (x moves by shear * (y - centre)).
    """

    def uniform(limit: float) -> tf.Tensor:
        return tf.random.uniform((batch,), -limit, limit) if limit else tf.zeros((batch,))

    return {
        "angle": uniform(rotation * 2.0 * math.pi),
        "shift_x": uniform(shift),
        "shift_y": uniform(shift),
        "zoom": 1.0 + uniform(zoom),
        "shear": uniform(shear),
    }


def affine_transforms(params: dict[str, tf.Tensor], height: tf.Tensor | int, width: tf.Tensor | int) -> tf.Tensor:
    """Compose rotation, shear, zoom (about the image centre) and shift into one matrix per image, (N, 8).

    The rows are ImageProjectiveTransformV3's [a0 a1 a2 b0 b1 b2 0 0], mapping an output pixel (x, y) to the input
    point it samples: p_in = A (p_out - c) + c - t with A = zoom * R(angle) * Shear, so content moves by +t.
    """
    height, width = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    cos, sin, zoom, shear = tf.cos(params["angle"]), tf.sin(params["angle"]), params["zoom"], params["shear"]
    a00, a01 = zoom * cos, zoom * (cos * shear - sin)
    a10, a11 = zoom * sin, zoom * (sin * shear + cos)
    cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
    tx, ty = params["shift_x"] * width, params["shift_y"] * height
    b0 = cx - a00 * cx - a01 * cy - tx
    b1 = cy - a10 * cx - a11 * cy - ty
    zeros = tf.zeros_like(a00)
    return tf.stack([a00, a01, b0, a10, a11, b1, zeros, zeros], axis=1)


def apply_transforms(images: tf.Tensor, transforms: tf.Tensor, interpolation: str = "bilinear") -> tf.Tensor:
    """Resample a float NHWC batch with one (N, 8) projective transform per image; outside pixels are 0."""
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=tf.cast(transforms, tf.float32),
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation=interpolation.upper(),
        fill_mode="CONSTANT",
    )


def random_affine(
    images: tf.Tensor,
    *,
    rotation: float = 0.0,
    shift: float = 0.0,
    zoom: float = 0.0,
    shear: float = 0.0,
    interpolation: str = "bilinear",
) -> tf.Tensor:
    """Rotate, shift, zoom and shear each image of a float NHWC batch at random, in one resampling.

    Keras' three preprocessing layers resample the batch three times, each with its own op chain; one composed
    matrix per image and a single batched ImageProjectiveTransformV3 do the same work once (issue 23).
    """
    if not (rotation or shift or zoom or shear):
        return images
    shape = tf.shape(images)
    params = affine_parameters(shape[0], rotation=rotation, shift=shift, zoom=zoom, shear=shear)
    return apply_transforms(images, affine_transforms(params, shape[1], shape[2]), interpolation)


def random_dihedral(images: tf.Tensor) -> tf.Tensor:
    """Each image of a square NHWC batch in one of its 8 mirror/quarter-turn views, drawn at random.

    A transpose, a left-right and an up-down mirror, each applied to a random half, reach all 8 views; none
    resamples a pixel, so a denoiser sees more image content without learning interpolation blur.
    """
    batch = tf.shape(images)[:1]

    def coin() -> tf.Tensor:
        return tf.reshape(tf.random.uniform(batch) < 0.5, (-1, 1, 1, 1))

    images = tf.where(coin(), tf.transpose(images, [0, 2, 1, 3]), images)
    images = tf.where(coin(), tf.reverse(images, axis=[2]), images)
    return tf.where(coin(), tf.reverse(images, axis=[1]), images)
