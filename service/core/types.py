"""Plain request and response types of the core path.

Adapters (REST, gRPC, batch scoring) translate wire types to these and back; pydantic request models and
protobuf messages never cross into the core.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar, get_args

import numpy as np

from pixelserve.modelspec import ModelSpec

from .offload import Offloader

if TYPE_CHECKING:
    from ..hooks import Hooks
    from .images import Limits

T = TypeVar("T")

DEFAULT_TOP_K = 5  # labels per image a classification answers when the client does not say

# adaptive: wait only while fewer requests are queued than recent batches held; fill: wait for a full batch
# (Triton's dynamic batcher); both never past max_queue_delay from the oldest request.
BatchPolicy = Literal["adaptive", "fill"]

TaskName = Literal["classify", "denoise", "reconstruct", "encode"]
CallTask = Literal[TaskName, "infer"]  # what one core request does: a task, or raw (V2) inference
CALL_TASKS: tuple[str, ...] = (*get_args(TaskName), "infer")
MAX_IMAGE_PIXELS = 4096 * 4096  # the default largest decoded image (width*height): a decompression-bomb bound
ModelState = Literal["loading", "ready", "unloading", "unavailable", "failed"]


@dataclass(frozen=True)
class ModelRef:
    """A model by name; version None means the repository's policy picks (latest by default)."""

    name: str
    version: int | None = None


ResizeMode = Literal["stretch", "center-crop", "letterbox"]
NormalizeMode = Literal["none", "digit"]
RESIZE_MODES: tuple[str, ...] = get_args(ResizeMode)
NORMALIZE_MODES: tuple[str, ...] = get_args(NormalizeMode)


@dataclass(frozen=True)
class Applied:
    """The preprocessing encoded images of a request got (reported back, so a client sees what was done).
    Digit normalisation does its own geometry, so with it `resize` is reported as "none"."""

    resize: ResizeMode | Literal["none"]
    normalize: NormalizeMode


@dataclass(frozen=True)
class ImageInputs:
    """A batch of inputs: encoded images (PNG/JPEG/BMP/GIF bytes) or one ready tensor, never both.

    A tensor is NHWC (or NHW for one channel) and is checked against the model's input spec; uint8 is the
    model's native dtype, float32 in [0, 255] is accepted and rounded. Tensors are taken as prepared;
    `resize` and `normalize` override model.json's preprocessing for encoded images (None: the model's own).
    """

    encoded: Sequence[bytes] = ()
    tensor: np.ndarray | None = None
    resize: ResizeMode | None = None
    normalize: NormalizeMode | None = None
    echo: bool = False  # answer with the prepared batch too (what the model saw), e.g. for the playground

    def __len__(self) -> int:
        return len(self.encoded) if self.tensor is None else int(self.tensor.shape[0])


@dataclass(frozen=True)
class ServedBy:
    name: str
    version: int


@dataclass(frozen=True)
class LabelScore:
    index: int
    label: str
    probability: float


@dataclass(frozen=True)
class Classification:
    top: list[LabelScore]
    # The paired autoencoder's reconstruction MSE (pixelserve.anomaly's rule: content-less inputs score 1.0),
    # its threshold, the verdict and the normalised 0..1 score (0.5 at the threshold).
    ood_score: float | None = None
    ood_threshold: float | None = None
    is_ood: bool | None = None
    anomaly_score: float | None = None


@dataclass(frozen=True)
class Reconstruction:
    image: np.ndarray  # float32 HWC in the model's output range (0..1)
    error: float  # per-image MSE against the input, in 0..1 units
    threshold: float | None = None
    is_anomaly: bool | None = None
    anomaly_score: float | None = None  # normalised 0..1, 0.5 at the threshold (pixelserve.anomaly)
    anomaly_map: np.ndarray | None = None  # float32 HW: per-pixel squared error, the graph's anomaly_map output


@dataclass(frozen=True)
class Encoding:
    latent: np.ndarray  # float32, 1-D


@dataclass(frozen=True)
class TaskResult(Generic[T]):
    model: ServedBy
    items: list[T]
    applied: Applied | None = None  # None for tensor inputs, which are taken as prepared
    inputs: np.ndarray | None = None  # the uint8 batch the model saw, when the request asked for it


@dataclass(frozen=True)
class InferResult:
    """Raw graph outputs for the V2 protocol, batch axis first."""

    model: ServedBy
    outputs: dict[str, np.ndarray]
    labels: list[str] | None = None  # the served version's class labels, for the classification extension
    applied: Applied | None = None


@dataclass(frozen=True)
class ModelStatus:
    name: str
    version: int
    state: ModelState
    reason: str = ""


@dataclass(frozen=True)
class ModelInfo:
    """What metadata endpoints show: the spec plus runtime facts."""

    spec: ModelSpec
    state: ModelState
    provider: str  # the active onnxruntime execution provider, e.g. CPUExecutionProvider
    versions: list[int] = field(default_factory=list)
    instances: int = 1  # onnxruntime sessions serving it (Triton's instance_group count)
    directory: Path | None = None  # the local folder with its files (a cache folder for an object store)


@dataclass(frozen=True)
class BatchSizeStats:
    """Executions of one batch size, as Triton's batch_stats report them (durations in nanoseconds)."""

    batch_size: int
    count: int
    compute_input_ns: int  # joining the requests' arrays into one batch
    compute_infer_ns: int  # onnxruntime
    compute_output_ns: int  # splitting the outputs back per request


@dataclass(frozen=True)
class ModelStats:
    """Counters for V2 /stats and ModelStatistics (durations in nanoseconds, as the protocol wants).

    Request counters come from the core, one count per request; a request's compute time is that of the batch
    it ran in, as Triton counts it. Execution counters come from the batcher, one count per batch.
    """

    name: str
    version: int
    success_count: int
    failure_count: int
    success_ns: int  # whole requests inside the core, decode to postprocess
    queue_ns: int
    compute_input_ns: int  # decode and preprocessing
    compute_ns: int  # onnxruntime, the batch each request ran in
    compute_output_ns: int  # postprocessing
    inference_count: int  # images
    execution_count: int  # batches
    last_inference_ms: int
    batches: list[BatchSizeStats] = field(default_factory=list)


class StatsMerger(Protocol):
    """Where a worker of several finds the other workers' statistics (process/workers.py StatsExchange)."""

    def merged(self, own: list[ModelStats]) -> list[ModelStats]: ...


class Core(Protocol):
    """The one path every adapter calls: decode, validate, batch, run, postprocess."""

    offload: Offloader  # the one pool adapters move big encoding work to
    hooks: Hooks  # the operations hooks; the edges call them around each transport request
    limits: Limits  # the request limits (bytes, pixels, images per request)

    def request(self, task: str, model: str, protocol: str) -> AbstractContextManager[Any]:
        """The scope an adapter opens around one request (core/calls.py CallScope): the hooks see it."""
        ...

    async def classify(
        self, ref: ModelRef, inputs: ImageInputs, *, top_k: int | None = None
    ) -> TaskResult[Classification]: ...

    async def denoise(self, ref: ModelRef, inputs: ImageInputs) -> TaskResult[Reconstruction]: ...

    async def reconstruct(self, ref: ModelRef, inputs: ImageInputs) -> TaskResult[Reconstruction]: ...

    async def encode(self, ref: ModelRef, inputs: ImageInputs) -> TaskResult[Encoding]: ...

    async def infer(self, ref: ModelRef, inputs: ImageInputs, outputs: Sequence[str] | None = None) -> InferResult: ...

    def model_info(self, ref: ModelRef) -> ModelInfo: ...

    def model_stats(self, ref: ModelRef | None = None) -> list[ModelStats]: ...

    def index(self) -> list[ModelStatus]: ...

    async def load(self, name: str) -> None: ...

    async def unload(self, name: str) -> None: ...

    def is_live(self) -> bool: ...

    def is_ready(self, ref: ModelRef | None = None) -> bool: ...
