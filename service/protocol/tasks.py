"""The task API (``/v1`` over REST, ``pixelserve.v1`` over gRPC), decided once for both transports, as
`protocol.v2` decides the V2 protocol.

What a request means and what the answer holds live here, on plain Python values: the model reference and its
version rule, the request options, the model index, the model metadata and each task's answer. REST writes the
values as JSON (rest/endpoints.py); gRPC builds its messages from them field for field (grpc/converters.py).
Neither decides anything of its own, so both transports answer one request with the same values
(tests/service/test_task_transports.py).

Answers are dictionaries keyed by the field names both wires share. Two kinds of value are left for a transport
to spell: encoded images, as PNG ``bytes`` (REST writes base64, gRPC a bytes field), and float arrays, as numpy
arrays (REST writes nested lists, gRPC a `Tensor`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.images import choices, encode_png
from ..core.types import (
    Classification,
    Core,
    Encoding,
    ImageInputs,
    ModelInfo,
    ModelRef,
    NormalizeMode,
    Reconstruction,
    ResizeMode,
    TaskResult,
)
from ..errors import InvalidInput, ServiceError
from .v2 import metadata as v2_metadata
from .v2.tensors import is_count

Answer = dict[str, Any]

# -- the model reference -------------------------------------------------------------------------------------


def model_ref(name: str, version: str | int | None) -> ModelRef:
    """The model and version a request names, by the V2 protocol's rule, so ``/v1``, ``/v2`` and both gRPC
    services read a version alike. None (no ``/versions/`` segment, gRPC's unset field) lets the repository's
    policy choose: the pinned version, else the newest that loads. A version is a positive integer in ASCII
    digits: ``-1``, ``0``, ``latest`` or ``٣`` are invalid (400, INVALID_ARGUMENT) however the body is sent; a
    well-formed version the model does not have is not found (404, NOT_FOUND)."""
    return v2_metadata.model_ref(name, version)


def unset(value: int) -> int | None:
    """proto3 sends "not given" as 0 for a number: for gRPC's version and top_k that is the task API's None."""
    return value or None


# -- the options ---------------------------------------------------------------------------------------------

OPTION_NAMES = ("top_k", "resize", "normalize", "return_input")
FLAG_TRUE = ("1", "true", "yes", "on")
FLAG_FALSE = ("0", "false", "no", "off", "")


@dataclass(frozen=True, slots=True)
class Options:
    """A request's options, checked. None is "not given": the model's preprocessing, DEFAULT_TOP_K labels, no
    echo. Every wire names them alike: query string, form fields, JSON body and the gRPC request."""

    top_k: int | None = None
    resize: ResizeMode | None = None
    normalize: NormalizeMode | None = None
    return_input: bool | None = None

    def over(self, fallback: Options) -> Options:
        """These options where given, `fallback`'s elsewhere (a query string's options win over the body's)."""
        if fallback is NO_OPTIONS:  # the common cases: options in one place, or none
            return self
        if self is NO_OPTIONS:
            return fallback
        return Options(
            fallback.top_k if self.top_k is None else self.top_k,
            fallback.resize if self.resize is None else self.resize,
            fallback.normalize if self.normalize is None else self.normalize,
            fallback.return_input if self.return_input is None else self.return_input,
        )

    def inputs(self, encoded: Sequence[bytes] = (), tensor: np.ndarray | None = None) -> ImageInputs:
        """The core's inputs: the request's images with the preprocessing overrides it asked for."""
        echo = bool(self.return_input)
        return ImageInputs(encoded=encoded, tensor=tensor, resize=self.resize, normalize=self.normalize, echo=echo)


NO_OPTIONS = Options()


def parse_top_k(value: object) -> int | None:
    """Labels per image: a positive integer (text from a query string or form, a number from JSON or gRPC), or
    None for the core's default (DEFAULT_TOP_K, 5). Only classify uses it; every task checks it where it is given."""
    if value is None:
        return None
    number = int(value) if is_count(value) else 0  # type: ignore[call-overload]
    if number < 1:
        raise InvalidInput(f"top_k must be a positive integer, got {value!r}")
    return number


def parse_flag(name: str, value: object) -> bool | None:
    """A yes/no option: a JSON or protobuf bool, or text (1/true/yes/on, 0/false/no/off or empty)."""
    if value is None or isinstance(value, bool):
        return value
    lowered = value.strip().lower() if isinstance(value, str) else None
    if lowered in FLAG_TRUE:
        return True
    if lowered in FLAG_FALSE:
        return False
    raise InvalidInput(f"{name} must be true or false, got {value!r}")


def options(
    top_k: object = None, resize: object = None, normalize: object = None, return_input: object = None
) -> Options:
    """Options from any wire, each checked here: resize and normalize by the core's rule (images.choices), an
    empty one keeping the model's own."""
    if top_k is None and resize is None and normalize is None and return_input is None:
        return NO_OPTIONS
    resize_mode, normalize_mode = choices(resize, normalize)
    return Options(parse_top_k(top_k), resize_mode, normalize_mode, parse_flag("return_input", return_input))


def options_from(fields: Mapping[str, object]) -> Options:
    """Options from named fields (a query string, form fields); names that are not options are not read."""
    if not fields:
        return NO_OPTIONS
    get = fields.get
    return options(get("top_k"), get("resize"), get("normalize"), get("return_input"))


# -- the index and the metadata ------------------------------------------------------------------------------


def model_index(core: Core) -> Answer:
    """Every model in the repository, by name: its task and provider (None when no version of it can be read),
    the state of its newest version, and every version, oldest first, with its state and why."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for status in core.index():
        by_name.setdefault(status.name, []).append(
            {"version": status.version, "state": status.state, "reason": status.reason}
        )
    models = []
    for name, versions in sorted(by_name.items()):
        versions.sort(key=lambda v: v["version"])
        task = provider = None
        try:
            info = core.model_info(ModelRef(name))
            task, provider = info.spec.task, info.provider
        except ServiceError:  # no servable version: the index still lists its states and reasons
            pass
        models.append({"name": name, "task": task, "provider": provider, "state": versions[-1]["state"],
                       "versions": versions})  # fmt: skip
    return {"models": models}


def model_metadata(info: ModelInfo) -> Answer:
    """A version's runtime facts and its whole model.json (`spec`), trust evidence included: calibration, golden
    set, drift baseline, quantization, parity, the recipe. `quality` repeats spec's, for a quick look."""
    spec = info.spec
    return {
        "name": spec.name,
        "version": spec.version,
        "versions": list(info.versions),
        "state": info.state,
        "provider": info.provider,
        "task": spec.task,
        "quality": spec.quality.model_dump(mode="json") if spec.quality else None,
        "spec": spec.model_dump(mode="json"),
    }


# -- the answers ---------------------------------------------------------------------------------------------


def served(result: TaskResult) -> dict[str, Any]:
    return {"name": result.model.name, "version": result.model.version}


def prepared(result: TaskResult) -> dict[str, Any] | None:
    """The preprocessing the request's encoded images got (None for tensors, which are taken as prepared), and
    each prepared input as PNG when the request asked (return_input)."""
    if result.applied is None:
        return None
    inputs = [] if result.inputs is None else [encode_png(x) for x in result.inputs]
    return {"resize": result.applied.resize, "normalize": result.applied.normalize, "inputs": inputs}


def answer_work(result: TaskResult) -> int:
    """Bytes an answer's PNGs are encoded from: the transports build a big answer off the event loop."""
    size = 0 if result.inputs is None else int(result.inputs.nbytes)
    for item in result.items:
        image = getattr(item, "image", None)
        size += 0 if image is None else int(image.nbytes)
    return size


def classification(result: TaskResult[Classification]) -> Answer:
    """Top-k labels per image, highest probability first, and the paired autoencoder's OOD score, threshold,
    verdict and normalised score where the model has one (else None)."""
    return {
        "model": served(result),
        "results": [
            {
                "top": [{"index": s.index, "label": s.label, "probability": s.probability} for s in item.top],
                "ood_score": item.ood_score,
                "ood_threshold": item.ood_threshold,
                "is_ood": item.is_ood,
                "anomaly_score": item.anomaly_score,
            }
            for item in result.items
        ],
        "prepared": prepared(result),
    }


def reconstruction(result: TaskResult[Reconstruction], tensors: bool = False) -> Answer:
    """Denoise and reconstruct: each output image as PNG with its error, the anomaly threshold, verdict and
    score (reconstruct, when calibrated), the per-pixel anomaly map (float32 HW, when the model outputs one)
    and, when asked (gRPC's return_tensor), the output itself as float32 HWC in 0..1."""
    return {
        "model": served(result),
        "results": [
            {
                "image": encode_png(item.image),
                "error": item.error,
                "threshold": item.threshold,
                "is_anomaly": item.is_anomaly,
                "anomaly_score": item.anomaly_score,
                "anomaly_map": None if item.anomaly_map is None else item.anomaly_map.astype(np.float32, copy=False),
                **({"tensor": item.image.astype(np.float32, copy=False)} if tensors else {}),
            }
            for item in result.items
        ],
        "prepared": prepared(result),
    }


def encoding(result: TaskResult[Encoding]) -> Answer:
    """The latent vector per image (float32)."""
    return {
        "model": served(result),
        "results": [{"latent": np.asarray(item.latent, dtype=np.float32).ravel().tolist()} for item in result.items],
        "prepared": prepared(result),
    }
