"""The custom Keras pieces the model builders use: airbench's frozen patch-whitening convolution and its
partial-identity initialiser, the contractive dense layer and batch normalisation trained on one fused op.
Registered as Keras serialisables (package "pixelserve"), so checkpoints that hold them load wherever this module
is imported."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops


@keras.saving.register_keras_serializable(package="pixelserve")
class Whitening(layers.Layer):
    """A patch-whitening convolution (airbench): a frozen kernel measured on training patches, a trained bias.

    The 2*k*k*C filters are the eigenvectors of the patch covariance scaled by 1/sqrt(eigenvalue) and their
    negatives, so the network sees decorrelated patches from the first step instead of spending epochs on it.
    `fit_whitening` sets the kernel; until then it is zero.
    """

    def __init__(self, patch: int = 2, eps: float = 5e-4, **kwargs):
        super().__init__(**kwargs)
        self.patch, self.eps = patch, eps

    def build(self, input_shape) -> None:
        channels = input_shape[-1]
        filters = 2 * self.patch * self.patch * channels
        self.kernel = self.add_weight(
            name="kernel", shape=(self.patch, self.patch, channels, filters), initializer="zeros", trainable=False
        )
        self.bias = self.add_weight(name="bias", shape=(filters,), initializer="zeros")

    def call(self, x):
        return ops.conv(x, ops.cast(self.kernel, x.dtype), padding="valid") + ops.cast(self.bias, x.dtype)

    def compute_output_shape(self, input_shape):
        height, width = (None if d is None else d - self.patch + 1 for d in input_shape[1:3])
        return (input_shape[0], height, width, self.kernel.shape[-1] if self.built else None)

    def whitening_kernel(self, images: np.ndarray) -> np.ndarray:
        """The kernel for `images` (the layer's float NHWC input): eigenvectors / sqrt(eigenvalues + eps), +-."""
        k, channels = self.patch, images.shape[-1]
        patches = np.lib.stride_tricks.sliding_window_view(images.astype(np.float64), (k, k), axis=(1, 2))
        flat = patches.transpose(0, 1, 2, 4, 5, 3).reshape(-1, k * k * channels)  # (kh, kw, C) order, as the kernel
        eigenvalues, eigenvectors = np.linalg.eigh(flat.T @ flat / len(flat))
        order = np.argsort(eigenvalues)[::-1]  # strongest component first
        scaled = eigenvectors[:, order] / np.sqrt(eigenvalues[order] + self.eps)
        return np.concatenate([scaled, -scaled], axis=1).reshape(k, k, channels, -1).astype(np.float32)

    def get_config(self) -> dict:
        return {**super().get_config(), "patch": self.patch, "eps": self.eps}


def fit_whitening(model: keras.Model, images: np.ndarray, batch_size: int = 500) -> None:
    """Set the kernel of every Whitening layer from `images` (float [0,1] NHWC) as they arrive at that layer."""
    for layer in model._flatten_layers():
        if isinstance(layer, Whitening):
            inputs = keras.Model(model.inputs, layer.input).predict(images, batch_size=batch_size, verbose=0)
            layer.kernel.assign(layer.whitening_kernel(np.asarray(inputs, np.float32)))


@keras.saving.register_keras_serializable(package="pixelserve")
class PartialDirac(keras.initializers.Initializer):
    """Identity on the first min(C_in, C_out) filters, uniform +-1/sqrt(fan_in) on the rest (airbench's init).

    Each conv starts by passing its input through, so a plain conv stack trains from step one like a residual one.
    """

    def __init__(self, seed: int | None = None):
        self.seed = seed

    def __call__(self, shape, dtype=None):
        kh, kw, c_in, c_out = shape
        base = keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform", seed=self.seed)(shape, dtype)
        n = min(c_in, c_out)
        identity = np.zeros(shape, np.float32)
        identity[kh // 2, kw // 2, np.arange(n), np.arange(n)] = 1.0
        keep = np.ones(shape, bool)
        keep[..., :n] = False
        return ops.where(keep, base, ops.cast(identity, base.dtype))

    def get_config(self) -> dict:
        return {"seed": self.seed}


@keras.saving.register_keras_serializable(package="pixelserve")
class ContractiveDense(layers.Dense):
    """A dense encoder layer that adds `contractive` * ||dh/dx||_F^2 to the loss (Rifai et al. 2011).

    For h = act(Wx + b), dh_j/dx_i = act'(z_j) W_ij, so the squared Frobenius norm is
    sum_j act'(z_j)^2 * sum_i W_ij^2: closed form, no Jacobian to build. Penalising it makes the code
    insensitive to small input changes. Valid for relu and sigmoid with the layer applied to the image itself.
    """

    def __init__(self, units: int, contractive: float = 0.0, **kwargs):
        super().__init__(units, **kwargs)
        self.contractive = contractive

    def call(self, inputs, training=None):
        code = super().call(inputs)
        if self.contractive > 0 and training:
            self.add_loss(self.contractive * ops.mean(self.squared_jacobian_norm(code)))
        return code

    def squared_jacobian_norm(self, code):
        """||dh/dx||_F^2 per example, from the layer's output `code`."""
        name = keras.activations.serialize(self.activation)
        if name == "sigmoid":
            slope = code * (1.0 - code)
        elif name == "relu":
            slope = ops.cast(code > 0, code.dtype)
        else:
            raise ValueError(f"closed-form contractive penalty needs relu or sigmoid, not {name}")
        column_norms = ops.sum(ops.square(ops.cast(self.kernel, code.dtype)), axis=0)
        return ops.sum(ops.square(slope) * column_norms, axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "contractive": self.contractive}


@keras.saving.register_keras_serializable(package="pixelserve")
class FusedBatchNormalization(layers.BatchNormalization):
    """Keras' BatchNormalization, trained with TensorFlow's fused kernel (one op forward, one backward).

    Keras 3 normalises with a dozen element-wise float32 ops, after upcasting bf16 activations; on two CPU cores
    they took more than half of the MNIST train step (docs/models.md). FusedBatchNormV3 does the same arithmetic
    in oneDNN. Only training takes the fused path: inference, and so the exported graph, is Keras' own, and so are
    the weights, the config and the moving statistics (biased batch variance, Keras' momentum convention).
    Masks, renorm and anything but NHWC images fall back to Keras.
    """

    def _fusable(self, inputs, mask) -> bool:
        return (
            keras.backend.backend() == "tensorflow"
            and mask is None
            and not self.renorm
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
        )

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable and self._fusable(inputs, mask)):
            return super().call(inputs, training=training, mask=mask)
        x = inputs if inputs.dtype in (tf.bfloat16, tf.float16, tf.float32) else tf.cast(inputs, tf.float32)
        channels = x.shape[-1]
        scale = ops.cast(self.gamma, "float32") if self.scale else tf.ones([channels])
        offset = ops.cast(self.beta, "float32") if self.center else tf.zeros([channels])
        empty = tf.zeros([0])
        y, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=x, scale=scale, offset=offset, mean=empty, variance=empty, epsilon=self.epsilon,
            exponential_avg_factor=1.0, data_format="NHWC", is_training=True,
        )  # fmt: skip
        count = tf.cast(tf.size(x) // channels, tf.float32)
        variance = variance * (count - 1.0) / count  # the op returns the unbiased variance; Keras keeps the biased
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return ops.cast(y, self.compute_dtype)
