"""pixelserve.v1 messages <-> the task API's plain values (protocol/tasks.py) and numpy arrays; no protobuf travels
past this module, and nothing here decides what a request means or what an answer holds: the messages are built
from the task API's answers field for field, so gRPC answers what REST answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from google.protobuf import json_format

from ..core.types import ImageInputs, ModelRef
from ..errors import InvalidInput
from ..protocol import tasks
from ..protocol.tasks import Answer
from ..protocol.v2.tensors import MAX_RANK, element_count
from .gen.pixelserve.v1 import pixelserve_pb2 as pb

T = TypeVar("T")

_DTYPES: dict[int, np.dtype] = {
    pb.Tensor.DATA_TYPE_UINT8: np.dtype(np.uint8),
    pb.Tensor.DATA_TYPE_FLOAT32: np.dtype("<f4"),
}
_TENSOR_TYPES = {dtype: code for code, dtype in _DTYPES.items()}


def model_ref(name: str, version: int) -> ModelRef:
    """The task API's reference; version 0 (proto3's unset) lets the repository's policy choose."""
    return tasks.model_ref(name, tasks.unset(version))


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
    """`images` (all encoded or all single-image tensors) or one `batch` tensor, never both; the options (resize,
    normalize, return_input) as the task API checks them."""
    options = tasks.options(resize=batch.resize, normalize=batch.normalize, return_input=batch.return_input)
    if batch.HasField("batch"):
        if batch.images:
            raise InvalidInput("send either images or a batch tensor, not both")
        return options.inputs(tensor=array_from_tensor(batch.batch))
    kinds = {image.WhichOneof("source") for image in batch.images}
    if None in kinds:
        raise InvalidInput("every image needs encoded bytes or a tensor")
    if kinds == {"tensor"}:
        arrays = [array_from_tensor(image.tensor) for image in batch.images]
        if len({a.shape for a in arrays}) != 1 or len({a.dtype for a in arrays}) != 1:
            raise InvalidInput("image tensors in one request must share shape and dtype")
        return options.inputs(tensor=np.stack(arrays))
    if len(kinds) > 1:
        raise InvalidInput("images must be all encoded or all tensors, not mixed")
    return options.inputs(encoded=[image.encoded for image in batch.images])


def _field(value: Any) -> Any:
    """A value of an answer as its field takes it: float arrays as `Tensor`s, the rest as they are."""
    return tensor_from_array(value) if isinstance(value, np.ndarray) else value


def classify_response(answer: Answer, request_id: str = "") -> pb.ClassifyResponse:
    return pb.ClassifyResponse(**answer, request_id=request_id)


def _reconstruction(item: dict[str, Any]) -> pb.Reconstruction:
    """The answer's `image` is the message's `png` (so named before the task API had a REST side)."""
    return pb.Reconstruction(png=item["image"], **{k: _field(v) for k, v in item.items() if k != "image"})


def images_response(answer: Answer, build: Callable[..., T]) -> T:
    """A denoise or reconstruct answer as its response message (`build`: DenoiseResponse or ReconstructResponse)."""
    return build(model=answer["model"], results=[_reconstruction(r) for r in answer["results"]],
                 prepared=answer["prepared"])  # fmt: skip


def encode_response(answer: Answer) -> pb.EncodeResponse:
    return pb.EncodeResponse(**answer)


def list_models_response(index: Answer) -> pb.ListModelsResponse:
    """The index as REST answers it (`index`), and its versions flat (`models`) for clients that read those."""
    flat = [{"name": model["name"], **version} for model in index["models"] for version in model["versions"]]
    return pb.ListModelsResponse(index=index, models=flat)


_PREPROCESSING = ("color_mode", "height", "width", "resize", "normalize")
_ANOMALY = ("metric", "percentile", "value", "false_positive_rate")


def model_metadata(metadata: Answer) -> pb.ModelMetadata:
    """The task API's metadata parsed into the message (`spec` is model.json whole, as a Struct), plus the typed
    fields older clients read, each a copy of its place in `spec`."""
    spec = metadata["spec"]
    anomaly, pairing = spec.get("anomaly"), spec.get("pairing")
    typed = {
        "description": spec["description"],
        "inputs": spec["inputs"],
        "outputs": spec["outputs"],
        "preprocessing": {key: spec["preprocessing"][key] for key in _PREPROCESSING},
        "labels": spec.get("labels") or [],
        "anomaly": None if anomaly is None else {key: anomaly[key] for key in _ANOMALY},
        "ood_model": pairing["ood_model"] if pairing else "",
        "parameters": spec.get("parameters") or 0,
        "created_at": spec.get("created_at") or "",
    }
    return json_format.ParseDict({**metadata, **typed}, pb.ModelMetadata())
