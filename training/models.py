"""Model builders: small functions on the Keras functional API.

Every builder takes float32 images in [0, 1] (NHWC) and returns a `Net`. Scaling from uint8 happens in the
export wrapper (training.export), so the same graph serves what it was trained on. Classifiers output
probabilities; autoencoders output a reconstruction in [0, 1] and, when they have one, a latent code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import keras
import numpy as np
from keras import layers, regularizers

from .layers import ContractiveDense, FusedBatchNormalization, PartialDirac, Whitening

NORMALIZE_LAYER = "normalize"


@dataclass
class Net:
    model: keras.Model  # float [0,1] image -> probabilities | reconstruction
    encoder: keras.Model | None = None  # float [0,1] image -> latent code


def _conv_bn_relu(x, filters: int, name: str | None = None, *, kernel: int = 3, strides: int = 1, padding="same"):
    x = layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False, name=name)(x)
    x = FusedBatchNormalization()(x)
    return layers.ReLU()(x)


def _normalize(x, mean: Sequence[float] | None, std: Sequence[float] | None):
    """Per-channel standardisation inside the graph, with statistics measured on the training set.

    A frozen 1x1 depthwise convolution computes (x - mean) / std; it exports to ONNX as plain weights
    (Keras' Normalization layer exports its statistics as extra graph inputs). It computes in float32 under any
    policy: bfloat16 keeps 8 significant bits, too few for 8-bit pixels once the mean is subtracted.
    """
    if mean is None or std is None:
        return x
    scale = np.asarray(std, dtype=np.float32) ** -1
    layer = layers.DepthwiseConv2D(1, trainable=False, name=NORMALIZE_LAYER, dtype="float32")
    y = layer(x)
    layer.set_weights([scale.reshape(1, 1, -1, 1), -np.asarray(mean, dtype=np.float32) * scale])
    return y


def normalization_of(model: keras.Model) -> tuple[list[float], list[float]] | None:
    """(mean, std) back from a trained model's normalisation layer, if it has one."""
    layer = next((lyr for lyr in model._flatten_layers() if lyr.name == NORMALIZE_LAYER), None)
    if layer is None:
        return None
    kernel, bias = layer.get_weights()
    std = 1.0 / kernel.reshape(-1)
    return [float(v) for v in -bias * std], [float(v) for v in std]


def _classifier_head(x, num_classes: int) -> keras.KerasTensor:
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name="probabilities")(x)


def mnist_cnn(
    input_shape, num_classes: int, *, width: int = 32, dense: int = 512, dropout: float = 0.5, mean=None, std=None
) -> Net:
    """The seed MNIST CNN: two Conv-BN-ReLU pairs per stage, MaxPool, Dense 512, Dropout, softmax."""
    inputs = keras.Input(input_shape)
    x = _normalize(inputs, mean, std)
    for filters in (width, width * 2):
        x = _conv_bn_relu(x, filters)
        x = _conv_bn_relu(x, filters)
        x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(dense, use_bias=False)(x)
    x = FusedBatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.Dropout(dropout)(x)
    return Net(keras.Model(inputs, _classifier_head(x, num_classes), name="mnist_cnn"))


def mnist_strided_cnn(
    input_shape,
    num_classes: int,
    *,
    widths: Sequence[int] = (32, 64),
    head: int = 128,
    dropout: float = 0.4,
    mean=None,
    std=None,
) -> Net:
    """A small all-convolutional MNIST net (Chris Deotte's Kaggle design): per stage two 3x3 valid convs and a
    5x5 stride-2 conv in place of pooling, all Conv-BN-ReLU, dropout; a 4x4 conv head.

    Strided convs learn their own downsampling, which with rotation/zoom/shift augmentation takes a single
    model past 99.6%.
    """
    inputs = keras.Input(input_shape)
    x = _normalize(inputs, mean, std)
    for width in widths:
        x = _conv_bn_relu(x, width, padding="valid")
        x = _conv_bn_relu(x, width, padding="valid")
        x = _conv_bn_relu(x, width, kernel=5, strides=2)
        x = layers.Dropout(dropout)(x)
    x = _conv_bn_relu(x, head, kernel=4, padding="valid")
    x = layers.Dropout(dropout)(layers.Flatten()(x))
    return Net(keras.Model(inputs, _classifier_head(x, num_classes), name="mnist_strided_cnn"))


def cifar10_tutorial_cnn(input_shape, num_classes: int, *, mean=None, std=None) -> Net:
    """The TensorFlow tutorial CNN: Conv32-Pool-Conv64-Pool-Conv64, Dense 64."""
    inputs = keras.Input(input_shape)
    x = _normalize(inputs, mean, std)
    x = layers.Conv2D(32, 3, activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(64, activation="relu")(x)
    return Net(keras.Model(inputs, _classifier_head(x, num_classes), name="cifar10_tutorial_cnn"))


def resnet9(input_shape, num_classes: int, *, width: int = 64, mean=None, std=None) -> Net:
    """ResNet-9 (Myrtle/DAWNBench layout): prep, three stages, two residual blocks, max-pool head."""
    inputs = keras.Input(input_shape)
    x = _normalize(inputs, mean, std)
    x = _conv_bn_relu(x, width)

    def stage(x, filters: int, residual: bool):
        x = _conv_bn_relu(x, filters)
        x = layers.MaxPooling2D()(x)
        if residual:
            shortcut = x
            x = _conv_bn_relu(x, filters)
            x = _conv_bn_relu(x, filters)
            x = layers.Add()([x, shortcut])
        return x

    x = stage(x, width * 2, residual=True)
    x = stage(x, width * 4, residual=False)
    x = stage(x, width * 8, residual=True)
    x = layers.GlobalMaxPooling2D()(x)
    logits = layers.Dense(num_classes, use_bias=False)(x)
    logits = layers.Rescaling(0.125)(logits)  # small initial logits, as in the original ResNet-9 recipe
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(logits)
    return Net(keras.Model(inputs, outputs, name="resnet9"))


def airbench(
    input_shape,
    num_classes: int,
    *,
    widths: Sequence[int] = (64, 256, 256),
    whiten_patch: int = 2,
    activation: str = "gelu",
    bn_momentum: float = 0.6,
    logit_scale: float = 1 / 9,
    mean=None,
    std=None,
) -> Net:
    """airbench94's network (Keller Jordan): frozen whitening conv, three conv-pool-BN blocks, max-pool head.

    Batch norm has no learnable scale (the conv before it sets the scale) and a short memory (momentum 0.6);
    the logits are scaled down so the softmax starts soft.
    """
    inputs = keras.Input(input_shape)
    x = _normalize(inputs, mean, std)
    x = Whitening(whiten_patch, name="whiten", dtype="float32")(x)  # 1/sqrt(eigenvalue) scales need float32
    x = layers.Activation(activation)(x)

    def norm(x):
        x = FusedBatchNormalization(momentum=bn_momentum, epsilon=1e-12, scale=False)(x)
        return layers.Activation(activation)(x)

    for width in widths:
        x = layers.Conv2D(width, 3, padding="same", use_bias=False, kernel_initializer=PartialDirac())(x)
        x = norm(layers.MaxPooling2D()(x))
        x = norm(layers.Conv2D(width, 3, padding="same", use_bias=False, kernel_initializer=PartialDirac())(x))
    x = layers.GlobalMaxPooling2D()(x)
    logits = layers.Dense(
        num_classes, use_bias=False, kernel_initializer=keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform")
    )(x)
    logits = layers.Rescaling(logit_scale)(logits)
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(logits)
    return Net(keras.Model(inputs, outputs, name="airbench"))


def _sigmoid_image(x, channels: int, name: str = "reconstruction"):
    return layers.Conv2D(channels, 3, padding="same", activation="sigmoid", dtype="float32", name=name)(x)


def dense_autoencoder(input_shape, *, code_size: int = 64, l1: float = 0.0, contractive: float = 0.0) -> Net:
    """A vanilla dense autoencoder; with `l1` > 0 the code is sparse (L1 activity regularisation), with
    `contractive` > 0 the encoder's Jacobian norm is penalised (a contractive autoencoder)."""
    inputs = keras.Input(input_shape)
    size = input_shape[0] * input_shape[1] * input_shape[2]
    regularizer = regularizers.L1(l1) if l1 > 0 else None
    dense = ContractiveDense if contractive > 0 else layers.Dense
    extra = {"contractive": contractive} if contractive > 0 else {}
    code = dense(code_size, activation="relu", activity_regularizer=regularizer, name="latent", **extra)(
        layers.Flatten()(inputs)
    )
    x = layers.Dense(size, activation="sigmoid", dtype="float32")(code)
    outputs = layers.Reshape(input_shape, name="reconstruction")(x)
    return Net(keras.Model(inputs, outputs, name="dense_autoencoder"), keras.Model(inputs, code))


def deep_autoencoder(input_shape, *, units: Sequence[int] = (512, 256, 128, 64)) -> Net:
    """A deep dense autoencoder; the decoder mirrors the encoder."""
    inputs = keras.Input(input_shape)
    size = input_shape[0] * input_shape[1] * input_shape[2]
    x = layers.Flatten()(inputs)
    for i, n in enumerate(units):
        x = layers.Dense(n, activation="relu", name="latent" if i == len(units) - 1 else None)(x)
    code = x
    for n in reversed(units[:-1]):
        x = layers.Dense(n, activation="relu")(x)
    x = layers.Dense(size, activation="sigmoid", dtype="float32")(x)
    outputs = layers.Reshape(input_shape, name="reconstruction")(x)
    return Net(keras.Model(inputs, outputs, name="deep_autoencoder"), keras.Model(inputs, code))


def conv_autoencoder(input_shape, *, code_size: int = 32, filters: Sequence[int] = (32, 64, 128)) -> Net:
    """A convolutional autoencoder squeezed through a dense code of `code_size` values."""
    inputs = keras.Input(input_shape)
    x = inputs
    for f in filters[:2]:
        x = _conv_bn_relu(x, f)
        x = layers.Conv2D(f, 3, strides=2, padding="same", activation="relu")(x)
    x = _conv_bn_relu(x, filters[2])
    grid = x.shape[1:]
    code = layers.Dense(code_size, name="latent")(layers.Flatten()(x))
    x = layers.Dense(grid[0] * grid[1] * grid[2], activation="relu")(code)
    x = layers.Reshape(grid)(x)
    x = _conv_bn_relu(x, filters[2])
    for f in reversed(filters[:2]):
        x = layers.Conv2DTranspose(f, 3, strides=2, padding="same", activation="relu")(x)
        x = _conv_bn_relu(x, f)
    outputs = _sigmoid_image(x, input_shape[2])
    return Net(keras.Model(inputs, outputs, name="conv_autoencoder"), keras.Model(inputs, code))


def conv_denoiser(input_shape, *, filters: Sequence[int] = (32, 64), skip: bool = True, residual: bool = False) -> Net:
    """A denoising convolutional autoencoder: strided encoder, transposed-conv decoder, U-Net skips.

    With `residual`, the network predicts the clean image as input minus a learned noise estimate.
    """
    inputs = keras.Input(input_shape)
    x = inputs
    skips = []
    for f in filters:
        x = _conv_bn_relu(x, f)
        x = _conv_bn_relu(x, f)
        skips.append(x)
        x = layers.Conv2D(f, 3, strides=2, padding="same", activation="relu")(x)
    x = _conv_bn_relu(x, filters[-1] * 2)
    for f, s in zip(reversed(filters), reversed(skips), strict=True):
        x = layers.Conv2DTranspose(f, 3, strides=2, padding="same", activation="relu")(x)
        if skip:
            x = layers.Concatenate()([x, s])
        x = _conv_bn_relu(x, f)
        x = _conv_bn_relu(x, f)
    if residual:
        noise = layers.Conv2D(input_shape[2], 3, padding="same", dtype="float32")(x)
        clean = layers.Subtract()([inputs, noise])
        outputs = layers.ReLU(max_value=1.0, dtype="float32", name="reconstruction")(clean)  # clip to [0, 1]
    else:
        outputs = _sigmoid_image(x, input_shape[2])
    return Net(keras.Model(inputs, outputs, name="conv_denoiser"))


def dncnn(input_shape, *, depth: int = 17, filters: int = 64, downsample: int = 1) -> Net:
    """DnCNN (Zhang et al. 2017): a Conv-BN-ReLU stack predicts the noise; the output is the input minus it.

    Predicting the residual is easier than the image: for Gaussian noise it is the noise itself. With
    `downsample` 2 the stack runs on a half-resolution grid of learned 2x2 patches (as FFDNet, Zhang et al.
    2018): four times fewer operations per layer and twice the receptive field.
    """
    inputs = keras.Input(input_shape)
    x = layers.Conv2D(filters, downsample if downsample > 1 else 3, strides=downsample, padding="same")(inputs)
    x = layers.ReLU()(x)
    for _ in range(depth - 2):
        x = _conv_bn_relu(x, filters)
    if downsample > 1:
        noise = layers.Conv2DTranspose(input_shape[2], downsample, strides=downsample, dtype="float32")(x)
    else:
        noise = layers.Conv2D(input_shape[2], 3, padding="same", dtype="float32")(x)
    clean = layers.Subtract()([inputs, noise])
    outputs = layers.ReLU(max_value=1.0, dtype="float32", name="reconstruction")(clean)  # clip to [0, 1]
    return Net(keras.Model(inputs, outputs, name="dncnn"))


CLASSIFIERS: dict[str, Callable[..., Net]] = {
    "mnist_cnn": mnist_cnn,
    "mnist_strided_cnn": mnist_strided_cnn,
    "cifar10_tutorial_cnn": cifar10_tutorial_cnn,
    "resnet9": resnet9,
    "airbench": airbench,
}
AUTOENCODERS: dict[str, Callable[..., Net]] = {
    "dense_autoencoder": dense_autoencoder,
    "deep_autoencoder": deep_autoencoder,
    "conv_autoencoder": conv_autoencoder,
    "conv_denoiser": conv_denoiser,
    "dncnn": dncnn,
}
