"""Batch augmentations written as plain TensorFlow ops, for the tf.data pipeline (never exported).

Keras' preprocessing layers resample images with an affine transform; a translation of whole pixels with
reflected borders and a mirror need no resampling, so these are exact and cheap.
"""

from __future__ import annotations

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
