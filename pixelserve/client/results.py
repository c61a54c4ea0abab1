"""What the server answers, as plain typed values, the same whichever transport carried them.

Fields an answer does not carry are None: servers whose gRPC protos predate the grouped model index and the
model.json in the metadata send neither task and provider in `models()` nor `ModelInfo.spec` over gRPC. Images
are numpy arrays; the only difference in values is that REST sends output images as 8-bit PNG, so
`ImageResult.image` is exact over gRPC and rounded to 1/255 over REST.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, overload

import numpy as np

T = TypeVar("T")


@dataclass(frozen=True)
class ServedBy:
    """The model version that answered (the newest, or the pinned one, when the request named none)."""

    name: str
    version: int


@dataclass(frozen=True)
class Prepared:
    """The preprocessing the server gave the request's encoded images (absent for tensors) and, when asked for
    with ``return_input=True``, each prepared input as PNG."""

    resize: str
    normalize: str
    inputs: list[bytes] = field(default_factory=list)

    def input_arrays(self) -> list[np.ndarray]:
        """The prepared inputs as uint8 HWC arrays: what the model saw."""
        return [png_pixels(png) for png in self.inputs]


@dataclass(frozen=True)
class TaskResult(Sequence[T], Generic[T]):
    """One answer per input image, in input order, with the model that answered."""

    model: ServedBy
    results: list[T]
    prepared: Prepared | None = None

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> list[T]: ...
    def __getitem__(self, index: int | slice) -> T | list[T]:
        return self.results[index]

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[T]:
        return iter(self.results)

    @property
    def one(self) -> T:
        """The result of a request with one image (ValueError otherwise, so a batch is not read as one)."""
        if len(self.results) != 1:
            raise ValueError(f"{len(self.results)} results, not one: index them instead")
        return self.results[0]


@dataclass(frozen=True)
class Label:
    index: int
    label: str
    probability: float


@dataclass(frozen=True)
class Classification:
    """Top-k labels, highest first; the OOD fields are set when the classifier is paired with an autoencoder."""

    top: list[Label]
    ood_score: float | None = None  # the paired autoencoder's reconstruction MSE
    ood_threshold: float | None = None
    is_ood: bool | None = None
    anomaly_score: float | None = None  # ood_score normalised to 0..1, 0.5 at the threshold

    @property
    def label(self) -> str:
        return self.top[0].label

    @property
    def probability(self) -> float:
        return self.top[0].probability


@dataclass(frozen=True)
class ImageResult:
    """A denoised or reconstructed image with its error and, when the model carries a threshold, the verdict."""

    image: np.ndarray  # float32 HWC in 0..1
    png: bytes  # the same image as the server encoded it, 8 bits per channel
    error: float  # mean squared error against the input, in 0..1 pixel units
    threshold: float | None = None
    is_anomaly: bool | None = None
    anomaly_score: float | None = None  # error normalised to 0..1, 0.5 at the threshold
    anomaly_map: np.ndarray | None = None  # float32 HW per-pixel squared error, when the model outputs one


@dataclass(frozen=True)
class Encoding:
    latent: np.ndarray  # float32, one dimension


@dataclass(frozen=True)
class VersionState:
    version: int
    state: str  # loading, ready, unloading, unavailable or failed
    reason: str = ""


@dataclass(frozen=True)
class ModelEntry:
    """One model of the repository with every version's state; `state` is the newest version's."""

    name: str
    state: str
    versions: list[VersionState]
    task: str | None = None  # None when no version could be read (or from an older gRPC server)
    provider: str | None = None


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: list[int]  # -1 marks the batch axis


@dataclass(frozen=True)
class Preprocessing:
    """What the server does to an encoded image before the graph: decode to this mode and size, then resize
    and normalize as named (a request may override both)."""

    color_mode: str
    height: int
    width: int
    resize: str
    normalize: str


@dataclass(frozen=True)
class Quality:
    """Measured on the named dataset split when the model was exported."""

    dataset: str
    split: str
    samples: int
    metrics: dict[str, float]


@dataclass(frozen=True)
class AnomalyThreshold:
    metric: str
    percentile: float
    value: float
    false_positive_rate: float


@dataclass(frozen=True)
class ModelInfo:
    """One model version's metadata; `spec` is its whole model.json with the trust evidence (calibration, golden
    set, drift baseline, ...)."""

    name: str
    version: int
    versions: list[int]
    task: str
    state: str
    provider: str  # the onnxruntime execution provider serving it
    description: str
    labels: list[str]
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    preprocessing: Preprocessing
    quality: Quality | None = None
    anomaly: AnomalyThreshold | None = None
    ood_model: str | None = None
    parameters: int | None = None
    created_at: str | None = None
    spec: dict[str, Any] | None = None


@dataclass(frozen=True)
class InferResult:
    """A KServe V2 inference: every output the request named (or the model has), as the graph produced it."""

    model: ServedBy
    outputs: dict[str, np.ndarray]


@dataclass(frozen=True)
class Health:
    """Whether the server is live, and ready: every model loaded (or the one asked about) and not draining."""

    live: bool
    ready: bool


def png_pixels(png: bytes) -> np.ndarray:
    """uint8 HWC pixels of a PNG the server wrote (grayscale gets its channel axis back)."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        pixels = np.asarray(image)
    return pixels[..., np.newaxis] if pixels.ndim == 2 else pixels
