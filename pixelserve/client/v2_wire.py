"""KServe V2 `infer` without I/O, over REST (binary tensor extension) and gRPC (raw contents): every output the
model has, by name, as the exact arrays the graph produced. The task calls answer in their own terms (top-k,
PNGs); this is for callers that compare raw outputs, such as `pixelserve verify` against a golden set.

Encoded images go as one BYTES tensor (one element per file), arrays with ``tensors=True`` as a UINT8 or FP32
NHWC tensor; the image input is named ``image``, as in every exported model.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from urllib.parse import quote

import numpy as np

from .gen.inference import grpc_service_pb2 as v2
from .grpc_wire import GrpcCall
from .inputs import Batch
from .rest_wire import RAW, RestCall
from .results import InferResult, ServedBy

V2_SERVICE = "v2"
INPUT = "image"
HEADER_LENGTH = "Inference-Header-Content-Length"
DTYPES: dict[str, np.dtype] = {
    name: np.dtype(code)
    for name, code in {
        "BOOL": "?", "UINT8": "u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "INT8": "i1",
        "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "FP16": "<f2", "FP32": "<f4", "FP64": "<f8",
    }.items()
}  # fmt: skip
_LENGTH = struct.Struct("<I")


def _input(batch: Batch) -> tuple[str, list[int], bytes]:
    """(datatype, shape, raw bytes) of the request's one input."""
    if batch.tensor is not None:
        datatype = "FP32" if batch.tensor.dtype == np.float32 else "UINT8"
        data = np.ascontiguousarray(batch.tensor, dtype=DTYPES[datatype]).tobytes()
        return datatype, list(batch.tensor.shape), data
    files = batch.encoded or []
    return "BYTES", [len(files)], b"".join(_LENGTH.pack(len(f)) + f for f in files)


def _array(datatype: str, shape: Sequence[int], raw: bytes) -> np.ndarray:
    if datatype not in DTYPES:
        raise ValueError(f"output of type {datatype} cannot be read as an array")
    return np.frombuffer(raw, dtype=DTYPES[datatype]).reshape(list(shape))


def _path(model: str, version: int | None) -> str:
    path = f"/v2/models/{quote(model, safe='')}"
    return f"{path}/versions/{int(version)}/infer" if version else f"{path}/infer"


def rest_call(model: str, version: int | None, batch: Batch, outputs: Sequence[str] | None) -> RestCall[InferResult]:
    datatype, shape, raw = _input(batch)
    request: dict[str, object] = {
        "inputs": [{"name": INPUT, "shape": shape, "datatype": datatype, "parameters": {"binary_data_size": len(raw)}}],
        "parameters": {"binary_data_output": True},
    }
    if outputs:
        request["outputs"] = [{"name": name, "parameters": {"binary_data": True}} for name in outputs]
    header = json.dumps(request).encode()
    headers = {"Content-Type": RAW, HEADER_LENGTH: str(len(header)), "Accept": RAW}

    return RestCall("POST", _path(model, version), parse_rest, content=header + raw, headers=headers)


def parse_rest(_status: int, body: bytes, headers: Mapping[str, str]) -> InferResult:
    """The binary response: a JSON header (its length in a response header, or all of the body when JSON)."""
    length = headers.get(HEADER_LENGTH)
    split = len(body) if length is None else int(length)
    header = json.loads(body[:split])
    outputs, offset = {}, split
    for out in header["outputs"]:
        size = (out.get("parameters") or {}).get("binary_data_size")
        if size is None:  # sent as JSON data after all
            outputs[out["name"]] = np.asarray(out["data"], dtype=DTYPES[out["datatype"]]).reshape(out["shape"])
            continue
        outputs[out["name"]] = _array(out["datatype"], out["shape"], body[offset : offset + size])
        offset += size
    return InferResult(ServedBy(header["model_name"], int(header.get("model_version") or 0)), outputs)


def grpc_call(model: str, version: int | None, batch: Batch, outputs: Sequence[str] | None) -> GrpcCall[InferResult]:
    datatype, shape, raw = _input(batch)
    request = v2.ModelInferRequest(
        model_name=model,
        model_version=str(version) if version else "",
        inputs=[v2.ModelInferRequest.InferInputTensor(name=INPUT, datatype=datatype, shape=shape)],
        outputs=[v2.ModelInferRequest.InferRequestedOutputTensor(name=name) for name in outputs or ()],
        raw_input_contents=[raw],
    )
    return GrpcCall(V2_SERVICE, "ModelInfer", request, parse_grpc)


def parse_grpc(response: v2.ModelInferResponse) -> InferResult:
    """Raw contents, as a request with raw inputs gets them."""
    outputs = {
        out.name: _array(out.datatype, out.shape, raw)
        for out, raw in zip(response.outputs, response.raw_output_contents, strict=True)
    }
    return InferResult(ServedBy(response.model_name, int(response.model_version or 0)), outputs)
