"""KServe V2 (Triton) gRPC messages <-> the core's plain types and numpy arrays.

The wire-neutral rules (datatypes, BYTES framing, classification strings) live in pixelserve.service.kserve, shared with
REST. gRPC-specific, as Triton does it: UINT8 travels in `uint_contents`, and a request that sent raw inputs
gets raw outputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pixelserve.modelspec import MODEL_FILE, OUTPUT_PROBABILITIES, ModelSpec
from pixelserve.service.errors import InvalidInput
from pixelserve.service.grpc.gen.inference import grpc_service_pb2 as pb
from pixelserve.service.grpc.gen.inference import model_config_pb2 as config_pb
from pixelserve.service.kserve import (
    BACKEND,
    CLASSIFICATION,
    IMAGE_TYPES,
    PLATFORM,
    V2_TYPES,
    classification_strings,
    element_count,
    join_bytes,
    repository_state,
    split_bytes,
    v2_type,
)
from pixelserve.service.settings import Settings
from pixelserve.service.types import ImageInputs, InferResult, ModelInfo, ModelRef, ModelStats, ModelStatus

# The InferTensorContents field that carries each type when not sent raw (FP16 has none: raw only).
_CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_CONFIG_TYPES = {
    "BOOL": config_pb.TYPE_BOOL,
    "UINT8": config_pb.TYPE_UINT8,
    "UINT16": config_pb.TYPE_UINT16,
    "UINT32": config_pb.TYPE_UINT32,
    "UINT64": config_pb.TYPE_UINT64,
    "INT8": config_pb.TYPE_INT8,
    "INT16": config_pb.TYPE_INT16,
    "INT32": config_pb.TYPE_INT32,
    "INT64": config_pb.TYPE_INT64,
    "FP16": config_pb.TYPE_FP16,
    "FP32": config_pb.TYPE_FP32,
    "FP64": config_pb.TYPE_FP64,
    "BYTES": config_pb.TYPE_STRING,
}


def model_ref(name: str, version: str) -> ModelRef:
    """An empty version lets the repository's policy choose; anything else must be a positive integer."""
    if not version:
        return ModelRef(name=name)
    if not version.isdigit() or int(version) <= 0:
        raise InvalidInput(f"model version must be a positive integer, got {version!r}")
    return ModelRef(name=name, version=int(version))


def infer_inputs(request: pb.ModelInferRequest, input_name: str) -> tuple[ImageInputs, bool]:
    """The one image input as core inputs, and whether the client sent raw contents (raw in, raw out)."""
    if len(request.inputs) != 1:
        raise InvalidInput(f"expected exactly one input named {input_name!r}, got {len(request.inputs)}")
    tensor = request.inputs[0]
    if tensor.name != input_name:
        raise InvalidInput(f"unknown input {tensor.name!r}; the model's input is {input_name!r}")
    if tensor.datatype not in IMAGE_TYPES:
        raise InvalidInput(f"input datatype must be one of {', '.join(IMAGE_TYPES)}, got {tensor.datatype!r}")
    shape = list(tensor.shape)
    count = element_count(shape)
    raw = len(request.raw_input_contents) > 0
    if raw and len(request.raw_input_contents) != len(request.inputs):
        raise InvalidInput("raw_input_contents must hold one entry per input")
    if tensor.datatype == "BYTES":
        items = split_bytes(request.raw_input_contents[0]) if raw else list(tensor.contents.bytes_contents)
        if len(items) != count or len(shape) == 0 or any(d != 1 for d in shape[1:]):
            raise InvalidInput(f"BYTES input of shape {shape} needs shape [N] or [N, 1] with N images")
        return ImageInputs(encoded=items), raw
    dtype = V2_TYPES[tensor.datatype]
    if raw:
        data = request.raw_input_contents[0]
        if len(data) != count * dtype.itemsize:
            raise InvalidInput(f"{tensor.datatype} input of shape {shape} needs {count * dtype.itemsize} bytes")
        array = np.frombuffer(data, dtype=dtype)
    else:
        values = getattr(tensor.contents, _CONTENTS_FIELD[tensor.datatype])
        if len(values) != count:
            raise InvalidInput(f"input of shape {shape} needs {count} values, got {len(values)}")
        if dtype == np.uint8 and any(v > 255 for v in values):
            raise InvalidInput("UINT8 values must be within [0, 255]")
        array = np.asarray(values, dtype=dtype)
    return ImageInputs(tensor=array.reshape(shape)), raw


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    class_count: int = 0  # > 0: answer the top class_count classification strings instead of the tensor


def requested_outputs(request: pb.ModelInferRequest) -> list[RequestedOutput]:
    found = []
    for output in request.outputs:
        parameter = output.parameters.get(CLASSIFICATION)
        count = 0
        if parameter is not None:
            choice = parameter.WhichOneof("parameter_choice")
            count = int(getattr(parameter, choice)) if choice in ("int64_param", "uint64_param") else 0
            if count <= 0:
                raise InvalidInput(f"the {CLASSIFICATION} parameter of {output.name!r} must be a positive integer")
        found.append(RequestedOutput(output.name, count))
    return found


def infer_response(
    request_id: str,
    result: InferResult,
    requested: Sequence[RequestedOutput],
    *,
    labels: Sequence[str] | None,
    raw: bool,
) -> pb.ModelInferResponse:
    response = pb.ModelInferResponse(
        model_name=result.model.name, model_version=str(result.model.version), id=request_id
    )
    tensors: list[tuple[str, str, np.ndarray]] = []
    for output in requested or [RequestedOutput(name) for name in result.outputs]:
        array = result.outputs[output.name]
        if output.class_count:
            names = labels if output.name == OUTPUT_PROBABILITIES else None
            tensors.append((output.name, "BYTES", classification_strings(array, output.class_count, names)))
        else:
            tensors.append((output.name, v2_type(array.dtype), array))
    # Triton's rule: raw_output_contents holds every output or none, and FP16 has no typed field.
    raw = raw or any(datatype not in _CONTENTS_FIELD for _, datatype, _ in tensors)
    for name, datatype, array in tensors:
        tensor = response.outputs.add(name=name, datatype=datatype, shape=array.shape)
        if datatype == "BYTES":
            items = [bytes(item) for item in array.ravel()]
            if raw:
                response.raw_output_contents.append(join_bytes(items))
            else:
                tensor.contents.bytes_contents.extend(items)
        elif raw:
            response.raw_output_contents.append(np.ascontiguousarray(array, dtype=V2_TYPES[datatype]).tobytes())
        else:
            getattr(tensor.contents, _CONTENTS_FIELD[datatype]).extend(array.ravel().tolist())
    return response


def _tensor_metadata(specs: Sequence) -> list[pb.ModelMetadataResponse.TensorMetadata]:
    return [
        pb.ModelMetadataResponse.TensorMetadata(name=t.name, datatype=v2_type(t.dtype), shape=t.shape) for t in specs
    ]


def metadata_response(info: ModelInfo) -> pb.ModelMetadataResponse:
    spec = info.spec
    return pb.ModelMetadataResponse(
        name=spec.name,
        versions=[str(v) for v in info.versions],
        platform=PLATFORM,
        inputs=_tensor_metadata(spec.inputs),
        outputs=_tensor_metadata(spec.outputs),
    )


def _parameters(info: ModelInfo) -> Mapping[str, config_pb.ModelParameter]:
    spec: ModelSpec = info.spec
    facts = {"task": spec.task, "provider": info.provider, "state": info.state, "version": str(spec.version)}
    if spec.labels:
        facts["labels"] = ",".join(spec.labels)
    if spec.pairing:
        facts["ood_model"] = spec.pairing.ood_model
    return {key: config_pb.ModelParameter(string_value=value) for key, value in facts.items()}


def config_response(info: ModelInfo, settings: Settings) -> pb.ModelConfigResponse:
    """Triton's view of the model: batched (dims exclude the batch axis), dynamically batched, one instance."""
    spec = info.spec
    pinned = settings.pinned_versions.get(spec.name)
    policy = (
        config_pb.ModelVersionPolicy(specific=config_pb.ModelVersionPolicy.Specific(versions=[pinned]))
        if pinned
        else config_pb.ModelVersionPolicy(latest=config_pb.ModelVersionPolicy.Latest(num_versions=1))
    )
    on_gpu = not info.provider.startswith("CPU")
    config = config_pb.ModelConfig(
        name=spec.name,
        platform=PLATFORM,
        backend=BACKEND,
        version_policy=policy,
        max_batch_size=settings.max_batch_size,
        input=[
            config_pb.ModelInput(
                name=t.name,
                data_type=_CONFIG_TYPES[v2_type(t.dtype)],
                format=config_pb.ModelInput.FORMAT_NHWC,
                dims=t.shape[1:],
            )
            for t in spec.inputs
        ],
        output=[
            config_pb.ModelOutput(name=t.name, data_type=_CONFIG_TYPES[v2_type(t.dtype)], dims=t.shape[1:])
            for t in spec.outputs
        ],
        instance_group=[
            config_pb.ModelInstanceGroup(
                kind=config_pb.ModelInstanceGroup.KIND_GPU if on_gpu else config_pb.ModelInstanceGroup.KIND_CPU,
                count=1,
                gpus=[settings.cuda_device_id] if on_gpu else [],
            )
        ],
        default_model_filename=MODEL_FILE,
        dynamic_batching=config_pb.ModelDynamicBatching(
            max_queue_delay_microseconds=round(settings.max_queue_delay_ms * 1000)
        ),
        parameters=_parameters(info),
    )
    return pb.ModelConfigResponse(config=config)


def statistics_response(stats: Sequence[ModelStats]) -> pb.ModelStatisticsResponse:
    """Our counters in Triton's shape: success = requests with their queue + compute time, queue and
    compute_infer split out; execution_count counts batches, inference_count images."""
    return pb.ModelStatisticsResponse(
        model_stats=[
            pb.ModelStatistics(
                name=s.name,
                version=str(s.version),
                last_inference=s.last_inference_ms,
                inference_count=s.inference_count,
                execution_count=s.execution_count,
                inference_stats=pb.InferStatistics(
                    success=pb.StatisticDuration(count=s.success_count, ns=s.queue_ns + s.compute_ns),
                    fail=pb.StatisticDuration(count=s.failure_count),
                    queue=pb.StatisticDuration(count=s.success_count, ns=s.queue_ns),
                    compute_infer=pb.StatisticDuration(count=s.success_count, ns=s.compute_ns),
                ),
            )
            for s in stats
        ]
    )


def index_response(statuses: Sequence[ModelStatus], *, ready_only: bool) -> pb.RepositoryIndexResponse:
    return pb.RepositoryIndexResponse(
        models=[
            pb.RepositoryIndexResponse.ModelIndex(
                name=s.name, version=str(s.version), state=repository_state(s.state), reason=s.reason
            )
            for s in statuses
            if not ready_only or s.state == "ready"
        ]
    )
