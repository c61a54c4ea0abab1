"""pixelserve.v1 messages <-> the core's plain types and numpy arrays; no protobuf travels past this module."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..core import images
from ..core.images import encode_png
from ..core.types import (
    Classification,
    Encoding,
    ImageInputs,
    ModelInfo,
    ModelRef,
    ModelStatus,
    Reconstruction,
    TaskResult,
)
from ..errors import InvalidInput
from ..protocol.v2.tensors import MAX_RANK, element_count
from .gen.pixelserve.v1 import pixelserve_pb2 as pb

_DTYPES: dict[int, np.dtype] = {
    pb.Tensor.DATA_TYPE_UINT8: np.dtype(np.uint8),
    pb.Tensor.DATA_TYPE_FLOAT32: np.dtype("<f4"),
}
_TENSOR_TYPES = {dtype: code for code, dtype in _DTYPES.items()}


def model_ref(name: str, version: int) -> ModelRef:
    """Version 0 (the proto3 default) lets the repository's policy choose."""
    return ModelRef(name=name, version=version or None)


def array_from_tensor(tensor: pb.Tensor) -> np.ndarray:
    dtype = _DTYPES.get(tensor.dtype)
    if dtype is None:
        raise InvalidInput("tensor dtype must be DATA_TYPE_UINT8 or DATA_TYPE_FLOAT32")
    shape = tuple(tensor.shape)
    if not shape or len(shape) > MAX_RANK or any(d <= 0 for d in shape):
        raise InvalidInput(
            f"tensor shape must have 1 to {MAX_RANK} positive dimensions, got {list(shape)[: MAX_RANK + 1]}"
        )
    expected = element_count("tensor", shape) * dtype.itemsize
    if expected != len(tensor.data):
        raise InvalidInput(f"tensor of shape {list(shape)} needs {expected} bytes, got {len(tensor.data)}")
    return np.frombuffer(tensor.data, dtype=dtype).reshape(shape)


def tensor_from_array(array: np.ndarray) -> pb.Tensor:
    dtype = array.dtype.newbyteorder("<") if array.dtype.itemsize > 1 else array.dtype
    code = _TENSOR_TYPES.get(np.dtype(dtype))
    if code is None:
        raise TypeError(f"no wire dtype for {array.dtype}")
    data = np.ascontiguousarray(array, dtype=dtype).tobytes()
    return pb.Tensor(dtype=code, shape=array.shape, data=data)


def image_inputs(batch: pb.ImageBatch) -> ImageInputs:
    """`images` (all encoded or all single-image tensors) or one `batch` tensor, never both."""
    resize, normalize = images.choices(batch.resize, batch.normalize)
    options = {"resize": resize, "normalize": normalize, "echo": batch.return_input}
    if batch.HasField("batch"):
        if batch.images:
            raise InvalidInput("send either images or a batch tensor, not both")
        return ImageInputs(tensor=array_from_tensor(batch.batch), **options)
    kinds = {image.WhichOneof("source") for image in batch.images}
    if None in kinds:
        raise InvalidInput("every image needs encoded bytes or a tensor")
    if kinds == {"tensor"}:
        arrays = [array_from_tensor(image.tensor) for image in batch.images]
        if len({a.shape for a in arrays}) != 1 or len({a.dtype for a in arrays}) != 1:
            raise InvalidInput("image tensors in one request must share shape and dtype")
        return ImageInputs(tensor=np.stack(arrays), **options)
    if len(kinds) > 1:
        raise InvalidInput("images must be all encoded or all tensors, not mixed")
    return ImageInputs(encoded=[image.encoded for image in batch.images], **options)


def prepared(result: TaskResult) -> pb.Prepared | None:
    """What the request's encoded images got (None for tensors), with the PNGs of the inputs when asked."""
    if result.applied is None:
        return None
    inputs = [encode_png(x) for x in result.inputs] if result.inputs is not None else []
    return pb.Prepared(resize=result.applied.resize, normalize=result.applied.normalize, inputs=inputs)


def served_by(result: TaskResult) -> pb.ServedBy:
    return pb.ServedBy(name=result.model.name, version=result.model.version)


def classify_response(result: TaskResult[Classification], request_id: str = "") -> pb.ClassifyResponse:
    return pb.ClassifyResponse(
        model=served_by(result),
        request_id=request_id,
        prepared=prepared(result),
        results=[
            pb.Classification(
                top=[pb.LabelScore(index=s.index, label=s.label, probability=s.probability) for s in item.top],
                ood_score=item.ood_score,
                ood_threshold=item.ood_threshold,
                is_ood=item.is_ood,
                anomaly_score=item.anomaly_score,
            )
            for item in result.items
        ],
    )


def reconstructions(items: Sequence[Reconstruction], return_tensor: bool) -> list[pb.Reconstruction]:
    return [
        pb.Reconstruction(
            png=encode_png(item.image),
            error=item.error,
            threshold=item.threshold,
            is_anomaly=item.is_anomaly,
            tensor=tensor_from_array(item.image.astype(np.float32, copy=False)) if return_tensor else None,
            anomaly_score=item.anomaly_score,
            anomaly_map=None if item.anomaly_map is None else tensor_from_array(item.anomaly_map.astype(np.float32)),
        )
        for item in items
    ]


def encode_response(result: TaskResult[Encoding]) -> pb.EncodeResponse:
    return pb.EncodeResponse(
        model=served_by(result),
        prepared=prepared(result),
        results=[pb.Embedding(latent=item.latent.astype(np.float32).ravel().tolist()) for item in result.items],
    )


def list_models_response(statuses: Sequence[ModelStatus]) -> pb.ListModelsResponse:
    return pb.ListModelsResponse(
        models=[pb.ModelVersionStatus(name=s.name, version=s.version, state=s.state, reason=s.reason) for s in statuses]
    )


def model_metadata(info: ModelInfo) -> pb.ModelMetadata:
    spec = info.spec
    pre = spec.preprocessing
    message = pb.ModelMetadata(
        name=spec.name,
        version=spec.version,
        versions=info.versions,
        task=spec.task,
        state=info.state,
        provider=info.provider,
        description=spec.description,
        inputs=[pb.TensorInfo(name=t.name, dtype=t.dtype, shape=t.shape) for t in spec.inputs],
        outputs=[pb.TensorInfo(name=t.name, dtype=t.dtype, shape=t.shape) for t in spec.outputs],
        preprocessing=pb.Preprocessing(
            color_mode=pre.color_mode, height=pre.height, width=pre.width, resize=pre.resize, normalize=pre.normalize
        ),
        labels=spec.labels or [],
        ood_model=spec.pairing.ood_model if spec.pairing else "",
        parameters=spec.parameters or 0,
        created_at=spec.created_at or "",
    )
    if spec.quality is not None:
        q = spec.quality
        message.quality.CopyFrom(pb.Quality(dataset=q.dataset, split=q.split, samples=q.samples, metrics=q.metrics))
    if spec.anomaly is not None:
        a = spec.anomaly
        message.anomaly.CopyFrom(
            pb.AnomalyThreshold(
                metric=a.metric,
                percentile=a.percentile,
                value=a.value,
                false_positive_rate=a.false_positive_rate,
            )
        )
    return message
