"""The two V2 clients `pixelserve verify` checks a running server with: encoded images as BYTES, every output
back as raw floats (REST with the binary tensor extension, gRPC with raw contents)."""

from __future__ import annotations

import json

import grpc
import httpx
import numpy as np

from ..grpc.gen.inference import grpc_service_pb2 as pb
from ..grpc.gen.inference import grpc_service_pb2_grpc as pb_grpc
from ..protocol.v2.tensors import V2_TYPES, join_bytes


def _array(datatype: str, shape: list[int], raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, dtype=V2_TYPES[datatype]).reshape(shape)


class RestV2:
    name = "REST"

    def __init__(self, url: str, api_key: str | None, timeout_s: float) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self.http = httpx.Client(base_url=url, headers=headers, timeout=timeout_s)

    def provider(self, model: str) -> str:
        config = self.http.get(f"/v2/models/{model}/config")
        config.raise_for_status()
        return str(config.json()["parameters"]["provider"]["string_value"])

    def infer(self, model: str, files: list[bytes], outputs: list[str]) -> tuple[int, dict[str, np.ndarray]]:
        raw = join_bytes(files)
        header = json.dumps({
            "inputs": [{"name": "image", "shape": [len(files)], "datatype": "BYTES",
                        "parameters": {"binary_data_size": len(raw)}}],
            "outputs": [{"name": name, "parameters": {"binary_data": True}} for name in outputs],
        }).encode()  # fmt: skip
        response = self.http.post(
            f"/v2/models/{model}/infer",
            content=header + raw,
            headers={"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))},
        )
        if response.status_code != 200:
            raise RuntimeError(f"REST infer on {model}: {response.status_code} {response.text[:300]}")
        split = int(response.headers["Inference-Header-Content-Length"])
        body = json.loads(response.content[:split])
        arrays, offset = {}, split
        for out in body["outputs"]:
            size = out["parameters"]["binary_data_size"]
            arrays[out["name"]] = _array(out["datatype"], out["shape"], response.content[offset : offset + size])
            offset += size
        return int(body["model_version"]), arrays

    def close(self) -> None:
        self.http.close()


class GrpcV2:
    name = "gRPC"

    def __init__(self, address: str, api_key: str | None, timeout_s: float) -> None:
        self.channel = grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", 64 << 20)])
        self.stub = pb_grpc.GRPCInferenceServiceStub(self.channel)
        self.metadata = (("x-api-key", api_key),) if api_key else ()
        self.timeout_s = timeout_s

    def provider(self, model: str) -> str:
        config = self.stub.ModelConfig(
            pb.ModelConfigRequest(name=model), metadata=self.metadata, timeout=self.timeout_s
        )
        return str(config.config.parameters["provider"].string_value)

    def infer(self, model: str, files: list[bytes], outputs: list[str]) -> tuple[int, dict[str, np.ndarray]]:
        tensor = pb.ModelInferRequest.InferInputTensor(name="image", datatype="BYTES", shape=[len(files)])
        request = pb.ModelInferRequest(
            model_name=model,
            inputs=[tensor],
            outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name=n) for n in outputs],
            raw_input_contents=[join_bytes(files)],
        )
        response = self.stub.ModelInfer(request, metadata=self.metadata, timeout=self.timeout_s)
        arrays = {
            out.name: _array(out.datatype, list(out.shape), raw)
            for out, raw in zip(response.outputs, response.raw_output_contents, strict=True)
        }
        return int(response.model_version), arrays

    def close(self) -> None:
        self.channel.close()
