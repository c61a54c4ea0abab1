"""The task API over gRPC without I/O: each call as the method, the request message and the function that reads
its answer, so the sync and async transports share all of it. Health is the KServe V2 service's (ServerLive,
ServerReady, ModelReady), the same questions REST's ``/v2/health`` answers.

Denoise and reconstruct ask for the float tensors too (`return_tensor`), so output images are exact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
from google.protobuf import json_format

from .gen.inference import grpc_service_pb2 as v2
from .gen.pixelserve.v1 import pixelserve_pb2 as pb
from .inputs import Batch
from .results import (
    AnomalyThreshold,
    Classification,
    Encoding,
    ImageResult,
    Label,
    ModelEntry,
    ModelInfo,
    Prepared,
    Preprocessing,
    Quality,
    ServedBy,
    TaskResult,
    TensorInfo,
    VersionState,
    png_pixels,
)

T = TypeVar("T")
TASK, V2 = "task", "v2"
_DTYPES = {pb.Tensor.DATA_TYPE_UINT8: np.dtype(np.uint8), pb.Tensor.DATA_TYPE_FLOAT32: np.dtype("<f4")}
_CODES = {dtype: code for code, dtype in _DTYPES.items()}


@dataclass(frozen=True)
class GrpcCall(Generic[T]):
    """One unary call: `service` (TASK or V2) and `method` name the stub method."""

    service: str
    method: str
    request: Any
    parse: Callable[[Any], T]


def tensor(array: np.ndarray) -> pb.Tensor:
    dtype = np.dtype(array.dtype).newbyteorder("<") if array.dtype.itemsize > 1 else np.dtype(array.dtype)
    code = _CODES[dtype]
    return pb.Tensor(dtype=code, shape=array.shape, data=np.ascontiguousarray(array, dtype=dtype).tobytes())


def array(message: pb.Tensor) -> np.ndarray:
    return np.frombuffer(message.data, dtype=_DTYPES[message.dtype]).reshape(tuple(message.shape))


def image_batch(batch: Batch, resize: str | None, normalize: str | None, return_input: bool) -> pb.ImageBatch:
    options = {"resize": resize or "", "normalize": normalize or "", "return_input": return_input}
    if batch.tensor is not None:
        return pb.ImageBatch(batch=tensor(batch.tensor), **options)
    return pb.ImageBatch(images=[pb.Image(encoded=data) for data in batch.encoded or ()], **options)


def _optional(message: Any, name: str) -> Any:
    return getattr(message, name) if message.HasField(name) else None


def _served(response: Any) -> ServedBy:
    return ServedBy(response.model.name, response.model.version)


def _prepared(response: Any) -> Prepared | None:
    if not response.HasField("prepared"):
        return None
    p = response.prepared
    return Prepared(p.resize, p.normalize, list(p.inputs))


def classifications(response: pb.ClassifyResponse) -> TaskResult[Classification]:
    items = [
        Classification(
            top=[Label(s.index, s.label, s.probability) for s in r.top],
            ood_score=_optional(r, "ood_score"),
            ood_threshold=_optional(r, "ood_threshold"),
            is_ood=_optional(r, "is_ood"),
            anomaly_score=_optional(r, "anomaly_score"),
        )
        for r in response.results
    ]
    return TaskResult(_served(response), items, _prepared(response))


def images(response: pb.DenoiseResponse | pb.ReconstructResponse) -> TaskResult[ImageResult]:
    items = [
        ImageResult(
            image=array(r.tensor) if r.HasField("tensor") else png_pixels(r.png).astype(np.float32) / 255.0,
            png=r.png,
            error=r.error,
            threshold=_optional(r, "threshold"),
            is_anomaly=_optional(r, "is_anomaly"),
            anomaly_score=_optional(r, "anomaly_score"),
            anomaly_map=array(r.anomaly_map) if r.HasField("anomaly_map") else None,
        )
        for r in response.results
    ]
    return TaskResult(_served(response), items, _prepared(response))


def encodings(response: pb.EncodeResponse) -> TaskResult[Encoding]:
    items = [Encoding(np.asarray(r.latent, dtype=np.float32)) for r in response.results]
    return TaskResult(_served(response), items, _prepared(response))


def task_call(
    task: str,
    model: str,
    version: int | None,
    batch: Batch,
    *,
    top_k: int | None = None,
    resize: str | None = None,
    normalize: str | None = None,
    return_input: bool = False,
) -> GrpcCall[Any]:
    common = {"model": model, "version": version or 0, "inputs": image_batch(batch, resize, normalize, return_input)}
    if task == "classify":
        return GrpcCall(TASK, "Classify", pb.ClassifyRequest(top_k=top_k or 0, **common), classifications)
    if task == "denoise":
        return GrpcCall(TASK, "Denoise", pb.DenoiseRequest(return_tensor=True, **common), images)
    if task == "reconstruct":
        return GrpcCall(TASK, "Reconstruct", pb.ReconstructRequest(return_tensor=True, **common), images)
    if task == "encode":
        return GrpcCall(TASK, "Encode", pb.EncodeRequest(**common), encodings)
    raise ValueError(f"unknown task {task!r}")


def _has(message: Any, name: str) -> bool:
    """Whether a field this client may be newer or older than the server's protos is present in the answer."""
    return name in message.DESCRIPTOR.fields_by_name and message.HasField(name)


def _model_index(response: pb.ListModelsResponse) -> list[ModelEntry]:
    if _has(response, "index"):  # servers that group the index as REST does, with task and provider
        return [
            ModelEntry(
                name=m.name,
                state=m.state,
                versions=[VersionState(v.version, v.state, v.reason) for v in m.versions],
                task=m.task if m.HasField("task") else None,
                provider=m.provider if m.HasField("provider") else None,
            )
            for m in response.index.models
        ]
    by_name: dict[str, list[VersionState]] = {}
    for s in response.models:
        by_name.setdefault(s.name, []).append(VersionState(s.version, s.state, s.reason))
    entries = []
    for name, versions in sorted(by_name.items()):
        versions.sort(key=lambda v: v.version)
        entries.append(ModelEntry(name=name, state=versions[-1].state, versions=versions))
    return entries


def _model_info(m: pb.ModelMetadata) -> ModelInfo:
    pre = m.preprocessing
    q, a = m.quality, m.anomaly
    return ModelInfo(
        name=m.name,
        version=m.version,
        versions=list(m.versions),
        task=m.task,
        state=m.state,
        provider=m.provider,
        description=m.description,
        labels=list(m.labels),
        inputs=[TensorInfo(t.name, t.dtype, list(t.shape)) for t in m.inputs],
        outputs=[TensorInfo(t.name, t.dtype, list(t.shape)) for t in m.outputs],
        preprocessing=Preprocessing(pre.color_mode, pre.height, pre.width, pre.resize, pre.normalize),
        quality=Quality(q.dataset, q.split, q.samples, dict(q.metrics)) if m.HasField("quality") else None,
        anomaly=AnomalyThreshold(a.metric, a.percentile, a.value, a.false_positive_rate)
        if m.HasField("anomaly")
        else None,
        ood_model=m.ood_model or None,
        parameters=m.parameters or None,
        created_at=m.created_at or None,
        spec=json_format.MessageToDict(m.spec) if _has(m, "spec") else None,
    )


def models_call() -> GrpcCall[list[ModelEntry]]:
    return GrpcCall(TASK, "ListModels", pb.ListModelsRequest(), _model_index)


def model_call(name: str, version: int | None) -> GrpcCall[ModelInfo]:
    return GrpcCall(TASK, "GetModel", pb.GetModelRequest(model=name, version=version or 0), _model_info)


def live_call() -> GrpcCall[bool]:
    return GrpcCall(V2, "ServerLive", v2.ServerLiveRequest(), lambda r: bool(r.live))


def ready_call(model: str | None, version: int | None) -> GrpcCall[bool]:
    if model is None:
        return GrpcCall(V2, "ServerReady", v2.ServerReadyRequest(), lambda r: bool(r.ready))
    request = v2.ModelReadyRequest(name=model, version=str(version) if version else "")
    return GrpcCall(V2, "ModelReady", request, lambda r: bool(r.ready))
