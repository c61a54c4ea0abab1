"""KServe V2 / Open Inference Protocol over HTTP, shaped so ``tritonclient.http`` works unchanged.

Besides the core protocol: the Triton extensions binary_tensor_data, classification, model_configuration,
model_repository and statistics. The image input accepts UINT8 / FP32 pixels (NHWC, as the metadata says)
or BYTES holding encoded image files, one element per image.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

import pixelserve
from pixelserve.modelspec import INPUT_IMAGE, OUTPUT_PROBABILITIES, ModelSpec, TensorSpec
from pixelserve.service.errors import InvalidInput, ModelNotReady
from pixelserve.service.kserve import BACKEND, PLATFORM, classification_strings, repository_state, v2_type
from pixelserve.service.metrics import Metrics
from pixelserve.service.rest.offload import run_sized
from pixelserve.service.rest.routing import add_model_routes
from pixelserve.service.rest.v2_codec import (
    HEADER_LENGTH,
    DecodedRequest,
    OutputTensor,
    decode_request,
    encode_response,
    inflate,
)
from pixelserve.service.settings import Settings
from pixelserve.service.types import Core, ImageInputs, InferResult, ModelRef, ModelStats, ModelStatus

EXTENSIONS = [
    "binary_tensor_data",
    "classification",
    "model_configuration",
    "model_repository",
    "model_repository(unload_dependents)",
    "statistics",
]


def _tensor_metadata(tensor: TensorSpec) -> dict[str, Any]:
    return {"name": tensor.name, "datatype": v2_type(tensor.dtype), "shape": tensor.shape}


def _model_metadata(spec: ModelSpec, versions: list[int]) -> dict[str, Any]:
    return {
        "name": spec.name,
        "versions": [str(v) for v in versions],
        "platform": PLATFORM,
        "inputs": [_tensor_metadata(t) for t in spec.inputs],
        "outputs": [_tensor_metadata(t) for t in spec.outputs],
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


def _model_config(spec: ModelSpec, provider: str, settings: Settings) -> dict[str, Any]:
    pinned = settings.pinned_versions.get(spec.name)
    policy = {"specific": {"versions": [pinned]}} if pinned else {"latest": {"num_versions": 1}}
    return {
        "name": spec.name,
        "platform": PLATFORM,
        "backend": BACKEND,
        "version_policy": policy,
        "max_batch_size": settings.max_batch_size,
        "input": [_config_tensor(t) for t in spec.inputs],
        "output": [_config_tensor(t) for t in spec.outputs],
        "dynamic_batching": {
            "preferred_batch_size": [settings.max_batch_size],
            "max_queue_delay_microseconds": round(settings.max_queue_delay_ms * 1000),
            "default_queue_policy": {
                "max_queue_size": settings.max_queue_size,
                "default_timeout_microseconds": round(settings.request_timeout_s * 1_000_000),
            },
        },
        "instance_group": [{"count": 1, "kind": "KIND_CPU" if provider == "CPUExecutionProvider" else "KIND_GPU"}],
        "parameters": {"execution_provider": {"string_value": provider}},
    }


def _duration(count: int, ns: int) -> dict[str, int]:
    return {"count": count, "ns": ns}


def _model_statistics(stats: ModelStats) -> dict[str, Any]:
    requests = stats.success_count
    return {
        "name": stats.name,
        "version": str(stats.version),
        "last_inference": stats.last_inference_ms,
        "inference_count": stats.inference_count,
        "execution_count": stats.execution_count,
        "inference_stats": {
            "success": _duration(requests, stats.queue_ns + stats.compute_ns),
            "fail": _duration(stats.failure_count, 0),
            "queue": _duration(requests, stats.queue_ns),
            "compute_input": _duration(requests, 0),
            "compute_infer": _duration(requests, stats.compute_ns),
            "compute_output": _duration(requests, 0),
            "cache_hit": _duration(0, 0),
            "cache_miss": _duration(0, 0),
        },
        "batch_stats": [],
    }


def _repository_entry(status: ModelStatus) -> dict[str, Any]:
    return {
        "name": status.name,
        "version": str(status.version),
        "state": repository_state(status.state),
        "reason": status.reason,
    }


async def _json_body(request: Request) -> dict[str, Any]:
    body = await request.body()
    if not body.strip():
        return {}
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"request body is not JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise InvalidInput("request body must be a JSON object")
    return parsed


def _image_input(decoded: DecodedRequest) -> ImageInputs:
    unknown = sorted(set(decoded.inputs) - {INPUT_IMAGE})
    if unknown:
        raise InvalidInput(f"unknown input {unknown[0]!r}: the model's only input is {INPUT_IMAGE!r}")
    if INPUT_IMAGE not in decoded.inputs:
        raise InvalidInput(f"missing input {INPUT_IMAGE!r}")
    return decoded.inputs[INPUT_IMAGE]


def _output_tensors(decoded: DecodedRequest, result: InferResult, labels: list[str] | None) -> list[OutputTensor]:
    request = decoded.request
    binary_default = bool(request.parameters.get("binary_data_output", False))
    if request.outputs is None:
        return [OutputTensor(name, array, binary_default) for name, array in result.outputs.items()]
    tensors = []
    for wanted in request.outputs:
        array = result.outputs[wanted.name]
        k = wanted.parameters.get("classification", 0)
        if not isinstance(k, int) or isinstance(k, bool) or k < 0:
            raise InvalidInput(f"output {wanted.name!r}: classification must be a non-negative integer, got {k!r}")
        if k:
            array = classification_strings(array, k, labels if wanted.name == OUTPUT_PROBABILITIES else None)
        binary = wanted.parameters.get("binary_data", binary_default)
        tensors.append(OutputTensor(wanted.name, array, bool(binary)))
    return tensors


def create_v2_health_router(core: Core) -> APIRouter:
    """Liveness and readiness stay open even with an API key: probes carry no credentials."""
    router = APIRouter(tags=["health"])

    @router.get("/v2/health/live")
    async def live() -> Response:
        return Response(status_code=200 if core.is_live() else 503)

    @router.get("/v2/health/ready")
    async def ready() -> Response:
        """503 while models load and once shutdown has begun, so load balancers stop sending traffic."""
        return Response(status_code=200 if core.is_ready() else 503)

    return router


def create_v2_router(core: Core, settings: Settings, metrics: Metrics) -> APIRouter:
    router = APIRouter(tags=["kserve-v2"])

    @router.get("/v2")
    async def server_metadata() -> dict[str, Any]:
        return {"name": "pixelserve", "version": pixelserve.__version__, "extensions": EXTENSIONS}

    # Statistics first: "/v2/models/stats" must not be taken for a model named "stats".
    @router.get("/v2/models/stats")
    async def all_statistics() -> dict[str, Any]:
        return {"model_stats": [_model_statistics(s) for s in core.model_stats()]}

    async def statistics(name: str, version: int | None = None) -> dict[str, Any]:
        return {"model_stats": [_model_statistics(s) for s in core.model_stats(ModelRef(name, version))]}

    async def metadata(name: str, version: int | None = None) -> dict[str, Any]:
        info = core.model_info(ModelRef(name, version))
        return _model_metadata(info.spec, info.versions)

    async def model_ready(name: str, version: int | None = None) -> Response:
        if not core.is_ready(ModelRef(name, version)):
            raise ModelNotReady(f"model {name!r} is not ready")
        return Response(status_code=200)

    async def config(name: str, version: int | None = None) -> dict[str, Any]:
        info = core.model_info(ModelRef(name, version))
        return _model_config(info.spec, info.provider, settings)

    async def infer(request: Request, name: str, version: int | None = None) -> Response:
        """JSON or binary-tensor inference; see the module docstring for the accepted image input."""
        with metrics.track(model=name, task="infer", protocol="rest") as tracker:
            body = await request.body()
            encoding = request.headers.get("content-encoding", "")
            if encoding:  # inflating may produce up to max_request_bytes whatever the body size: off the loop
                body = await run_in_threadpool(inflate, body, encoding, settings.max_request_bytes)
            decoded = await run_sized(len(body), decode_request, body, request.headers.get(HEADER_LENGTH))
            wanted = [o.name for o in decoded.request.outputs] if decoded.request.outputs is not None else None
            result = await core.infer(ModelRef(name, version), _image_input(decoded), outputs=wanted)
            tracker.version = result.model.version
            outputs = _output_tensors(decoded, result, result.labels)
            size = sum(t.array.nbytes for t in outputs)
            content, headers = await run_sized(
                size, encode_response, result.model.name, result.model.version, decoded.request.id, outputs
            )
        return Response(content=content, headers=headers)

    for suffix, endpoint, method in (
        ("/stats", statistics, "GET"),
        ("/ready", model_ready, "GET"),
        ("/config", config, "GET"),
        ("/infer", infer, "POST"),
        ("", metadata, "GET"),
    ):
        add_model_routes(router, "/v2/models/{name}", suffix, endpoint, method)

    @router.post("/v2/repository/index")
    async def repository_index(request: Request) -> JSONResponse:
        """Every version with its state; ``{"ready": true}`` keeps only the ready ones."""
        ready_only = (await _json_body(request)).get("ready", False) is True
        entries = [_repository_entry(s) for s in core.index() if not ready_only or s.state == "ready"]
        return JSONResponse(entries)

    @router.post("/v2/repository/models/{name}/load")
    async def load(request: Request, name: str) -> Response:
        """(Re)load a model from the repository; config or file overrides are refused, the repository is the
        one source of truth."""
        parameters = (await _json_body(request)).get("parameters") or {}
        if not isinstance(parameters, dict):
            raise InvalidInput("parameters must be a JSON object")
        overrides = sorted(k for k in parameters if k == "config" or k.startswith("file:"))
        if overrides:
            raise InvalidInput(f"load overrides {overrides} are not supported: change the model repository instead")
        await core.load(name)
        return Response(status_code=200)

    @router.post("/v2/repository/models/{name}/unload")
    async def unload(request: Request, name: str) -> Response:
        await _json_body(request)
        await core.unload(name)
        return Response(status_code=200)

    return router
