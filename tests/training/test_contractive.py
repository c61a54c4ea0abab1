"""The contractive penalty contracts: on real MNIST digits, the same dense autoencoder trained with lambda > 0 has a
smaller encoder Jacobian than with lambda = 0, from the same initial weights and batches."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from pixelserve.training import models
from pixelserve.training.analysis import encoder_jacobian_norm
from pixelserve.training.data import load_dataset


def _train_dense_autoencoder(x: np.ndarray, contractive: float) -> models.Net:
    keras.utils.set_random_seed(7)
    net = models.dense_autoencoder(x.shape[1:], code_size=32, contractive=contractive)
    net.model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="mse")
    images = x.astype(np.float32) / 255.0
    net.model.fit(images, images, batch_size=64, epochs=3, shuffle=False, verbose=0)
    return net


def test_contractive_penalty_lowers_the_encoder_jacobian_on_real_digits(shared_datasets: Path, tmp_path: Path) -> None:
    data = load_dataset("mnist", shared_datasets, tmp_path / "cache")
    train, test = data.x_train[:512], data.x_test[:200]
    plain = encoder_jacobian_norm(_train_dense_autoencoder(train, 0.0).encoder, test)
    contractive = encoder_jacobian_norm(_train_dense_autoencoder(train, 1e-3).encoder, test)
    assert contractive < 0.7 * plain, f"||J||_F {contractive:.3f} with the penalty against {plain:.3f} without"
