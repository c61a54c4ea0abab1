"""Named recipes: dataset + model builder + hyperparameters. Every default is visible here.

A recipe is saved verbatim into model.json, so a model always says how it was made. Any field can be
overridden on the command line: `pixelserve train mnist-classifier --set epochs=3 --set learning_rate=0.01`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

Task = Literal["classify", "denoise", "reconstruct"]


@dataclass(frozen=True)
class Recipe:
    name: str  # also the exported model's name
    task: Task
    dataset: str  # mnist | fashion_mnist | cifar10 | a path to an image folder / archive
    model: str  # a builder in pixelserve.training.models.BUILDERS
    model_args: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    # Optimisation
    epochs: int = 10
    batch_size: int = 128
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    learning_rate: float = 1e-3
    schedule: Literal["constant", "cosine", "onecycle", "triangular"] = "constant"
    warmup_fraction: float = 0.2  # onecycle, triangular: share of steps spent rising to the peak
    lr_start_fraction: float = 0.2  # triangular only: learning rate at the first step, as a fraction of the peak
    lr_end_fraction: float = 0.07  # triangular only: learning rate at the last step, as a fraction of the peak
    weight_decay: float = 0.0  # decoupled (Keras): each step shrinks weights by learning_rate * weight_decay
    momentum: float = 0.9  # sgd only (Nesterov)
    bias_lr_multiplier: float = 1.0  # sgd only: learning-rate factor for batch-norm offsets (airbench: 64)
    lookahead_every: int = 0  # steps between lookahead pulls towards slow weights (airbench: 5); 0 disables
    lookahead_decay: float = 0.95**5  # final pull strength; it grows as (step / total)^3
    label_smoothing: float = 0.0
    mixed_precision: bool = False  # bfloat16 compute on CPUs with avx512_bf16; export is always float32
    validation_split: float = 0.1  # held out from train for early stopping and anomaly calibration
    early_stopping_patience: int = 0  # 0 disables early stopping
    seed: int = 1337
    split_seed: int | None = None  # seed of the held-out split; None: `seed`. Ensemble members share one split
    members: int = 1  # >1: train this many networks (seeds seed, seed+1, ...) and export their mean (ensemble.py)

    # Augmentation (classifiers unless noted), applied in the input pipeline, never exported
    augment_rotation: float = 0.0  # fraction of a full turn
    augment_shift: float = 0.0  # fraction of width/height
    augment_zoom: float = 0.0  # scale in [1 - zoom, 1 + zoom]
    augment_shear: float = 0.0  # horizontal shear factor in [-shear, shear]; all four resampled at once
    augment_flip: bool = False
    augment_flip_alternating: bool = False  # airbench: a fixed half starts mirrored, all flip every other epoch
    augment_crop_pad: int = 0  # random whole-pixel translation up to this many pixels, borders reflected
    augment_dihedral: bool = False  # autoencoders: a random one of the 8 mirror/quarter-turn views (square images)
    whitening_samples: int = 5000  # training images the whitening layer's patch statistics are measured on
    tta_flip: bool = False  # average the prediction with that of the mirrored image, inside the exported graph
    tta_translate: int = 0  # also average views shifted by this many pixels (up-left, down-right; reflected)
    tta_dihedral: bool = False  # autoencoders: mean output over the 8 mirror/quarter-turn views (square images)

    # Autoencoders
    noise_sigma: float = 0.0  # Gaussian noise on inputs (denoisers); pixels in [0, 1]
    eval_sigmas: tuple[float, ...] = ()
    anomaly_percentile: float = 99.0
    anomaly_threshold_mode: str = "percentile"  # percentile | fpr (anomaly_target_fpr) | f1 (against foreign images)
    anomaly_target_fpr: float | None = None  # fpr mode: the largest false-positive rate on held-out normal images

    # Serving-side preprocessing declared in model.json; None: the dataset's default (_DATASET_PREPROCESSING)
    resize: str | None = None  # stretch | center-crop | letterbox
    normalize: str | None = None  # none | digit (MNIST's own normalisation of uploads)

    # Export
    opset: int = 17
    parity_samples: int = 512
    parity_tolerance: float = 1e-4
    ood_model: str | None = None  # pair a classifier with an autoencoder in the same repository

    def with_overrides(self, overrides: dict[str, str]) -> Recipe:
        """Apply `key=value` overrides, parsing values as JSON where they parse (numbers, lists, booleans)."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        changes: dict[str, Any] = {}
        for key, raw in overrides.items():
            if key not in fields:
                raise ValueError(f"unknown recipe field {key!r}; fields: {', '.join(sorted(fields))}")
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
            if key == "eval_sigmas":
                value = tuple(value)
            changes[key] = value
        return dataclasses.replace(self, **changes)

    @property
    def held_out_seed(self) -> int:
        """The seed that picks the validation images: shared by an ensemble's members, so none trained on them."""
        return self.seed if self.split_seed is None else self.split_seed

    @property
    def sigmas(self) -> tuple[float, ...]:
        """Noise levels a denoiser is measured at: eval_sigmas, else the training sigma."""
        return tuple(self.eval_sigmas) or (self.noise_sigma,)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Recipe:
        """Inverse of to_dict, for recipes read back from JSON (lists become tuples)."""
        return cls(**{**values, "eval_sigmas": tuple(values.get("eval_sigmas", ()))})


# How uploads of other sizes and looks are brought to a dataset's images: MNIST digits are centred by mass on a
# black background, so uploads get the same normalisation; CIFAR-10 objects fill the frame, so photos are cropped.
_DATASET_PREPROCESSING = {"mnist": ("stretch", "digit"), "cifar10": ("center-crop", "none")}


def preprocessing_of(recipe: Recipe) -> tuple[str, str]:
    """(resize, normalize) the recipe declares, or its dataset's default (stretch, none for image folders)."""
    resize, normalize = _DATASET_PREPROCESSING.get(recipe.dataset, ("stretch", "none"))
    return recipe.resize or resize, recipe.normalize or normalize


_MNIST_AUG = {"augment_rotation": 0.03, "augment_shift": 0.1, "augment_zoom": 0.1}

RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in [
        Recipe(
            name="mnist-classifier",
            task="classify",
            dataset="mnist",
            model="mnist_strided_cnn",
            model_args={"widths": [32, 64], "head": 128, "dropout": 0.4},
            description=(
                "All-convolutional MNIST CNN (strided 5x5 convs instead of pooling, BN, dropout); rotation/shift/"
                "zoom; one-cycle Adam, label smoothing, lookahead; 1 px translate TTA in the graph."
            ),
            epochs=20,
            batch_size=128,
            learning_rate=2e-3,
            schedule="onecycle",
            warmup_fraction=0.1,
            label_smoothing=0.1,
            lookahead_every=5,
            mixed_precision=True,
            validation_split=0.02,
            tta_translate=1,
            ood_model="mnist-autoencoder",
            **_MNIST_AUG,
        ),
        Recipe(
            name="fashion-mnist-classifier",
            task="classify",
            dataset="fashion_mnist",
            model="mnist_cnn",
            description="The seed MNIST CNN on Fashion-MNIST.",
            epochs=15,
            learning_rate=2e-3,
            schedule="cosine",
            augment_shift=0.05,
            augment_flip=True,
        ),
        Recipe(
            name="cifar10-tutorial-cnn",
            task="classify",
            dataset="cifar10",
            model="cifar10_tutorial_cnn",
            description="Seed TensorFlow tutorial CNN: three convolutions, Dense 64.",
            epochs=10,
            batch_size=64,
        ),
        Recipe(
            name="cifar10-classifier",
            task="classify",
            dataset="cifar10",
            model="airbench",
            model_args={"widths": [64, 256, 256], "activation": "silu"},
            description=(
                "airbench94 layout (frozen 2x2 whitening conv, three conv-pool-BN blocks); alternating flip + "
                "2 px translate; triangular Nesterov SGD with 64x BN-offset learning rate, lookahead, label "
                "smoothing 0.2; mirror + 1 px translate TTA in the graph."
            ),
            epochs=20,
            batch_size=1024,
            optimizer="sgd",
            # airbench94's lr 11.5, momentum 0.85 and wd 0.0153 "per 1024 examples" on a summed loss, in Keras'
            # mean-loss units: lr 11.5 * (1 - 0.85) / (2 - 0.85) = 1.5; decoupled decay 0.0153 / (11.5 * 0.15).
            learning_rate=1.5,
            schedule="triangular",
            warmup_fraction=0.23,
            lr_start_fraction=0.2,
            lr_end_fraction=0.07,
            weight_decay=0.0153 / (11.5 * 0.15),
            momentum=0.85,
            bias_lr_multiplier=64.0,
            lookahead_every=5,
            label_smoothing=0.2,
            mixed_precision=True,
            validation_split=0.02,
            augment_flip=True,
            augment_flip_alternating=True,
            augment_crop_pad=2,
            tta_flip=True,
            tta_translate=1,
        ),
        Recipe(
            name="mnist-dense-autoencoder",
            task="reconstruct",
            dataset="mnist",
            model="dense_autoencoder",
            model_args={"code_size": 64},
            description="Vanilla dense autoencoder, 64-d code.",
            epochs=20,
            batch_size=256,
        ),
        Recipe(
            name="mnist-deep-autoencoder",
            task="reconstruct",
            dataset="mnist",
            model="deep_autoencoder",
            model_args={"units": [512, 256, 128, 64]},
            description="Deep dense autoencoder 512-256-128-64.",
            epochs=20,
            batch_size=256,
        ),
        Recipe(
            name="mnist-sparse-autoencoder",
            task="reconstruct",
            dataset="mnist",
            model="dense_autoencoder",
            model_args={"code_size": 64, "l1": 1e-5},
            description="Sparse autoencoder: 64-d code with L1 activity regularisation.",
            epochs=20,
            batch_size=256,
        ),
        Recipe(
            name="mnist-contractive-autoencoder",
            task="reconstruct",
            dataset="mnist",
            model="dense_autoencoder",
            model_args={"code_size": 64, "contractive": 1e-4},
            description=(
                "Contractive autoencoder (Rifai et al. 2011): the dense 64-d autoencoder with "
                "lambda * ||d code / d x||_F^2 added to the loss (closed form for the relu encoder)."
            ),
            epochs=20,
            batch_size=256,
        ),
        Recipe(
            name="mnist-autoencoder",
            task="reconstruct",
            dataset="mnist",
            model="conv_autoencoder",
            model_args={"code_size": 32, "filters": [16, 32, 64]},
            description="Convolutional autoencoder with a 32-d code; anomaly threshold on held-out digits.",
            epochs=12,
            batch_size=128,
            schedule="cosine",
            learning_rate=2e-3,
        ),
        Recipe(
            name="mnist-denoiser",
            task="denoise",
            dataset="mnist",
            model="conv_denoiser",
            model_args={"filters": [16, 32], "skip": True},
            description="Denoising convolutional autoencoder (U-Net skips), trained with Gaussian noise sigma=0.3.",
            epochs=6,
            batch_size=128,
            schedule="cosine",
            learning_rate=2e-3,
            noise_sigma=0.3,
            eval_sigmas=(0.1, 0.3, 0.5),
        ),
        Recipe(
            name="cifar10-denoiser",
            task="denoise",
            dataset="cifar10",
            model="conv_denoiser",
            model_args={"filters": [32, 64, 128], "skip": True, "residual": True},
            description="Denoising convolutional autoencoder (U-Net skips, residual), Gaussian noise sigma=0.1.",
            epochs=12,  # 28.53 dB at sigma 0.1 in 1,225 s on 2 CPU cores; 6 epochs gave 28.07 (docs/models.md)
            batch_size=64,
            schedule="cosine",
            learning_rate=2e-3,
            noise_sigma=0.1,
            eval_sigmas=(0.1, 0.3, 0.5),
            mixed_precision=True,
        ),
    ]
}
# Three mnist-classifier networks from seeds 1337-1339, their mean probability exported as one graph (ensemble.py).
RECIPES["mnist-classifier-ensemble"] = dataclasses.replace(
    RECIPES["mnist-classifier"],
    name="mnist-classifier-ensemble",
    members=3,
)


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown recipe {name!r}; recipes: {', '.join(sorted(RECIPES))}") from None
