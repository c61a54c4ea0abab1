"""Measurements on a trained Keras encoder that the ONNX quality metrics cannot give: how contractive and how
sparse it is.

`python -m pixelserve.training.analysis runs/<recipe>/<time>` prints the mean encoder-Jacobian Frobenius norm
of a run's checkpoint on the test split, the figure that shows a contractive autoencoder contracts, and the
activity of its code, the figures that show a sparse autoencoder is sparse.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from .data import load_dataset
from .train import CHECKPOINT, RECIPE_FILE


def encoder_jacobian_norm(encoder: keras.Model, images: np.ndarray, batch_size: int = 250) -> float:
    """Mean over `images` (uint8 NHWC) of ||d code / d x||_F, with x the float [0, 1] image.

    The Jacobian is taken with a GradientTape per batch (one row per code unit), so it holds for any encoder,
    not only for the dense ones the closed-form penalty covers.
    """
    norms = []
    for start in range(0, len(images), batch_size):
        x = tf.convert_to_tensor(images[start : start + batch_size].astype(np.float32) / 255.0)
        with tf.GradientTape() as tape:
            tape.watch(x)
            code = tf.cast(encoder(x, training=False), tf.float32)
        jacobian = tape.batch_jacobian(code, x)  # (N, code units, H, W, C)
        norms.append(tf.sqrt(tf.reduce_sum(tf.square(tf.reshape(jacobian, (len(x), -1))), axis=1)).numpy())
    return float(np.concatenate(norms).mean())


ACTIVE_THRESHOLD = 0.01  # a code unit counts as active on an image when |value| exceeds this


def code_activity(codes: np.ndarray, threshold: float = ACTIVE_THRESHOLD) -> dict[str, float]:
    """How much of a code (N, units) is in use: the L1 penalty of a sparse autoencoder should lower all four figures.

    mean_abs_activation: mean |value| over images and units; active_share: share of (image, unit) pairs above
    `threshold`; active_units_per_image: their mean count per image; live_unit_share: share of units active on at
    least one image (the rest are dead).
    """
    active = np.abs(codes) > threshold
    return {
        "mean_abs_activation": float(np.abs(codes).mean()),
        "active_share": float(active.mean()),
        "active_units_per_image": float(active.sum(axis=1).mean()),
        "live_unit_share": float(active.any(axis=0).mean()),
        "threshold": threshold,
    }


def latent_encoder(model: keras.Model) -> keras.Model:
    """The image -> code part of an exported-core checkpoint (its second output, or the layer named latent)."""
    if len(model.outputs) > 1:
        return keras.Model(model.inputs, model.outputs[1])
    return keras.Model(model.inputs, model.get_layer("latent").output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a training run directory: runs/<recipe>/<timestamp>")
    parser.add_argument("--data-dir", type=Path, default=None, help="folder with <dataset>.npz (else the download)")
    args = parser.parse_args(argv)
    recipe = json.loads((args.run_dir / RECIPE_FILE).read_text())
    data = load_dataset(recipe["dataset"], args.data_dir)
    encoder = latent_encoder(keras.models.load_model(args.run_dir / CHECKPOINT))
    norm = encoder_jacobian_norm(encoder, data.x_test)
    codes = np.asarray(encoder.predict(data.x_test.astype(np.float32) / 255.0, batch_size=500, verbose=0))
    report = {"run": str(args.run_dir), "test_images": len(data.x_test), "encoder_jacobian_frobenius": norm}
    print(json.dumps({**report, "code": code_activity(codes.reshape(len(codes), -1))}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
