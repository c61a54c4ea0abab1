"""KServe V2 (Triton) protobuf messages <-> `pixelserve.service.protocol.v2`'s wire-neutral values.

Only the gRPC encoding lives here; what a request means is decided in `pixelserve.service.protocol.v2`. As Triton
does it: typed contents (UINT8 in `uint_contents`, ...) or `raw_input_contents`, and a request that sent raw
inputs gets raw outputs. Metadata, configuration, statistics and the index are the V2 module's JSON
dictionaries parsed into their messages, so they cannot differ from what REST sends.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
from google.protobuf import json_format
from google.protobuf.message import Message

from ..errors import InvalidInput
from ..protocol.v2.infer import InferRequest, InferResponse, InputTensor, RequestedOutput, class_count
from ..protocol.v2.metadata import model_ref
from ..protocol.v2.tensors import BYTES, V2_TYPES, join_bytes, split_bytes
from .gen.inference import grpc_service_pb2 as pb

M = TypeVar("M", bound=Message)

# The InferTensorContents field that carries each type when not sent raw (FP16 has none: raw only).
CONTENTS_FIELD = {
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
    BYTES: "bytes_contents",
}
# What each typed field's values are read into: wide enough that out-of-range values reach the core's checks
# (a UINT8 of 300 is refused there, not wrapped here).
FIELD_DTYPES = {"bool_contents": np.bool_, "uint_contents": np.int64, "uint64_contents": np.uint64,
                "int_contents": np.int64, "int64_contents": np.int64, "fp32_contents": np.float64,
                "fp64_contents": np.float64}  # fmt: skip
CLASSIFICATION = "classification"


def message(values: dict[str, Any] | list[Any], into: M) -> M:
    """A V2 JSON dictionary as its protobuf message (field names as in the .proto)."""
    return json_format.ParseDict(values, into)


def _parameter(value: pb.InferParameter) -> Any:
    choice = value.WhichOneof("parameter_choice")
    return None if choice is None else getattr(value, choice)


def infer_request(request: pb.ModelInferRequest) -> tuple[InferRequest, bool]:
    """The neutral request, and whether the client sent raw contents (raw in, raw out)."""
    raw = len(request.raw_input_contents) > 0
    if raw and len(request.raw_input_contents) != len(request.inputs):
        raise InvalidInput("raw_input_contents must hold one entry per input")
    inputs = []
    for i, tensor in enumerate(request.inputs):
        field = CONTENTS_FIELD.get(tensor.datatype)
        if raw:
            data: Any = request.raw_input_contents[i]
            if tensor.datatype == BYTES:  # framed elements, split here (off the event loop for big messages)
                data = split_bytes(data)
        elif field is None:
            data = []
        elif tensor.datatype == BYTES:
            data = list(getattr(tensor.contents, field))
        else:  # numbers as one array, not a list of Python objects
            data = np.fromiter(getattr(tensor.contents, field), dtype=FIELD_DTYPES[field])
        inputs.append(InputTensor(tensor.name, tensor.datatype, list(tensor.shape), data))
    outputs = None
    if request.outputs:
        outputs = []
        for out in request.outputs:
            parameter = out.parameters.get(CLASSIFICATION)
            count = class_count(out.name, _parameter(parameter) if parameter is not None else 0)
            outputs.append(RequestedOutput(out.name, count))
    ref = model_ref(request.model_name, request.model_version)
    parameters = {key: _parameter(value) for key, value in request.parameters.items()}
    return InferRequest(ref, inputs, outputs, request.id, parameters), raw


def infer_response(response: InferResponse, *, raw: bool) -> pb.ModelInferResponse:
    message_ = pb.ModelInferResponse(
        model_name=response.model_name, model_version=response.model_version, id=response.id
    )
    for key, value in response.parameters.items():
        message_.parameters[key].string_param = value
    # Triton's rule: raw_output_contents holds every output or none, and FP16 has no typed field.
    raw = raw or any(out.datatype not in CONTENTS_FIELD for out in response.outputs)
    for out in response.outputs:
        tensor = message_.outputs.add(name=out.name, datatype=out.datatype, shape=out.array.shape)
        if out.datatype == BYTES:
            items = [bytes(item) for item in out.array.ravel()]
            if raw:
                message_.raw_output_contents.append(join_bytes(items))
            else:
                tensor.contents.bytes_contents.extend(items)
        elif raw:
            message_.raw_output_contents.append(np.ascontiguousarray(out.array, dtype=V2_TYPES[out.datatype]).tobytes())
        else:
            getattr(tensor.contents, CONTENTS_FIELD[out.datatype]).extend(out.array.ravel().tolist())
    return message_
