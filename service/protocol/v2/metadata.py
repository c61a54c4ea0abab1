"""Everything the V2 protocol reports besides inference, as Triton's JSON: server and model metadata, the
model configuration, statistics and the repository index.

REST sends these dictionaries as they are; gRPC parses them into its protobuf messages
(`google.protobuf.json_format.ParseDict`), so both transports carry the same values by construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pixelserve
from pixelserve.modelspec import INPUT_IMAGE, MODEL_FILE, TensorSpec

from ...core.types import Core, ModelInfo, ModelRef, ModelState, ModelStats, ModelStatus
from ...errors import InvalidInput, ModelNotReady
from ...settings import Settings
from .tensors import is_count, v2_type

SERVER_NAME = "pixelserve"
PLATFORM = "onnxruntime_onnx"
BACKEND = "onnxruntime"
EXTENSIONS = (
    "binary_tensor_data",
    "classification",
    "model_configuration",
    "model_repository",
    "model_repository(unload_dependents)",
    "statistics",
)
_REPOSITORY_STATES: dict[ModelState, str] = {"ready": "READY", "loading": "LOADING", "unloading": "UNLOADING"}


def model_ref(name: str, version: str | int | None) -> ModelRef:
    """A model and version from a wire: an empty version lets the repository's policy choose; anything else
    must be a positive integer in ASCII digits."""
    if version in (None, ""):
        return ModelRef(name)
    if isinstance(version, int) and not isinstance(version, bool):
        number = version
    elif isinstance(version, str) and is_count(version):
        number = int(version)
    else:
        raise InvalidInput(f"model version must be a positive integer, got {version!r}")
    if number <= 0:
        raise InvalidInput(f"model version must be a positive integer, got {version!r}")
    return ModelRef(name, number)


def server_metadata() -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": pixelserve.__version__, "extensions": list(EXTENSIONS)}


def _tensor(tensor: TensorSpec) -> dict[str, Any]:
    return {"name": tensor.name, "datatype": v2_type(tensor.dtype), "shape": list(tensor.shape)}


def model_metadata(info: ModelInfo) -> dict[str, Any]:
    spec = info.spec
    return {
        "name": spec.name,
        "versions": [str(v) for v in info.versions],
        "platform": PLATFORM,
        "inputs": [_tensor(t) for t in spec.inputs],
        "outputs": [_tensor(t) for t in spec.outputs],
    }


def _config_tensor(tensor: TensorSpec) -> dict[str, Any]:
    """Triton dims leave out the batch axis; a per-image scalar is dims [1] reshaped to [] as Triton does."""
    entry: dict[str, Any] = {"name": tensor.name, "data_type": "TYPE_" + v2_type(tensor.dtype)}
    dims = tensor.shape[1:]
    if dims:
        entry["dims"] = dims
    else:
        entry["dims"] = [1]
        entry["reshape"] = {"shape": []}
    if tensor.name == INPUT_IMAGE:
        entry["format"] = "FORMAT_NHWC"
    return entry


def _parameters(info: ModelInfo) -> dict[str, dict[str, str]]:
    spec = info.spec
    facts = {
        "task": spec.task,
        "provider": info.provider,
        "execution_provider": info.provider,
        "state": info.state,
        "version": str(spec.version),
    }
    facts["resize"] = spec.preprocessing.resize
    facts["normalize"] = spec.preprocessing.normalize
    if spec.labels:
        facts["labels"] = ",".join(spec.labels)
    if spec.pairing:
        facts["ood_model"] = spec.pairing.ood_model
    return {key: {"string_value": value} for key, value in facts.items()}


def model_config(info: ModelInfo, settings: Settings) -> dict[str, Any]:
    """Triton's view of the model: batched (dims exclude the batch axis), dynamically batched."""
    spec = info.spec
    pinned = settings.pinned_versions.get(spec.name)
    on_gpu = bool(info.provider) and not info.provider.startswith("CPU")
    group: dict[str, Any] = {"count": info.instances, "kind": "KIND_GPU" if on_gpu else "KIND_CPU"}
    if on_gpu:
        group["gpus"] = [settings.cuda_device_id]
    return {
        "name": spec.name,
        "platform": PLATFORM,
        "backend": BACKEND,
        "version_policy": {"specific": {"versions": [pinned]}} if pinned else {"latest": {"num_versions": 1}},
        "max_batch_size": settings.max_batch_size,
        "input": [_config_tensor(t) for t in spec.inputs],
        "output": [_config_tensor(t) for t in spec.outputs],
        "instance_group": [group],
        "default_model_filename": MODEL_FILE,
        "dynamic_batching": {
            "preferred_batch_size": [settings.max_batch_size],
            "max_queue_delay_microseconds": round(settings.max_queue_delay_ms * 1000),
            "default_queue_policy": {
                "max_queue_size": settings.max_queue_size,
                "default_timeout_microseconds": round(settings.request_timeout_s * 1_000_000),
            },
        },
        "parameters": _parameters(info),
    }


def _duration(count: int, ns: int) -> dict[str, int]:
    return {"count": count, "ns": ns}


def _model_statistics(s: ModelStats) -> dict[str, Any]:
    """Our counters in Triton's shape. Every compute count is the success count, as Triton reports them
    (perf_analyzer refuses statistics whose compute counts differ)."""
    n = s.success_count
    return {
        "name": s.name,
        "version": str(s.version),
        "last_inference": s.last_inference_ms,
        "inference_count": s.inference_count,
        "execution_count": s.execution_count,
        "inference_stats": {
            "success": _duration(n, s.success_ns),
            "fail": _duration(s.failure_count, 0),
            "queue": _duration(n, s.queue_ns),
            "compute_input": _duration(n, s.compute_input_ns),
            "compute_infer": _duration(n, s.compute_ns),
            "compute_output": _duration(n, s.compute_output_ns),
            "cache_hit": _duration(0, 0),
            "cache_miss": _duration(0, 0),
        },
        "batch_stats": [
            {
                "batch_size": b.batch_size,
                "compute_input": _duration(b.count, b.compute_input_ns),
                "compute_infer": _duration(b.count, b.compute_infer_ns),
                "compute_output": _duration(b.count, b.compute_output_ns),
            }
            for b in s.batches
        ],
    }


def statistics(stats: Sequence[ModelStats]) -> dict[str, Any]:
    return {"model_stats": [_model_statistics(s) for s in stats]}


def repository_state(state: ModelState) -> str:
    """Triton's repository index states; failed and unavailable versions are both UNAVAILABLE."""
    return _REPOSITORY_STATES.get(state, "UNAVAILABLE")


def repository_index(statuses: Sequence[ModelStatus], *, ready_only: bool) -> list[dict[str, str]]:
    return [
        {"name": s.name, "version": str(s.version), "state": repository_state(s.state), "reason": s.reason}
        for s in statuses
        if not ready_only or s.state == "ready"
    ]


def model_ready(core: Core, ref: ModelRef) -> bool:
    """Whether the version serves; an unknown model or version is ModelNotFound, not merely "not ready"."""
    try:
        core.model_info(ref)
    except ModelNotReady:  # it exists, but no version of it is ready
        return False
    return core.is_ready(ref)
