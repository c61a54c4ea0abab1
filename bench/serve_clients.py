"""The serving benchmark's client side: many batch-1 calls in flight per event loop (grpc.aio or aiohttp), one
process per client, so the load generator is not what limits the server (used by bench/serve_bench.py)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Target:
    """Everything a client process needs to send one kind of request."""

    protocol: str
    http: str
    grpc: str
    model: str
    task: str
    png: bytes
    pixels: bytes
    shape: tuple[int, ...]


@dataclass
class Load:
    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""
    elapsed_s: float = 0.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- client side (runs in worker processes) ---------------------------------------------------------------


def _grpc_call(target: Target):
    import grpc

    from pixelserve.service.grpc.gen.inference import grpc_service_pb2 as v2_pb
    from pixelserve.service.grpc.gen.inference import grpc_service_pb2_grpc as v2_grpc
    from pixelserve.service.grpc.gen.pixelserve.v1 import pixelserve_pb2 as pb
    from pixelserve.service.grpc.gen.pixelserve.v1 import pixelserve_pb2_grpc as pb_grpc

    channel = grpc.aio.insecure_channel(target.grpc)
    if target.protocol == "grpc-v2":
        stub = v2_grpc.GRPCInferenceServiceStub(channel)
        tensor = v2_pb.ModelInferRequest.InferInputTensor(name="image", datatype="UINT8", shape=target.shape)
        request = v2_pb.ModelInferRequest(model_name=target.model, inputs=[tensor], raw_input_contents=[target.pixels])
        method = stub.ModelInfer
    else:
        stub = pb_grpc.PixelServeStub(channel)
        inputs = pb.ImageBatch(images=[pb.Image(encoded=target.png)])
        request, method = {
            "classify": (pb.ClassifyRequest(model=target.model, inputs=inputs, top_k=1), stub.Classify),
            "denoise": (pb.DenoiseRequest(model=target.model, inputs=inputs), stub.Denoise),
            "reconstruct": (pb.ReconstructRequest(model=target.model, inputs=inputs), stub.Reconstruct),
        }[target.task]

    async def call() -> None:
        await method(request)

    return call, channel.close


def _http_call(target: Target, concurrency: int):
    import aiohttp

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency))
    if target.protocol == "http-v2":
        header = json.dumps(
            {
                "inputs": [
                    {
                        "name": "image",
                        "shape": list(target.shape),
                        "datatype": "UINT8",
                        "parameters": {"binary_data_size": len(target.pixels)},
                    }
                ]
            }
        ).encode()
        url = f"{target.http}/v2/models/{target.model}/infer"
        body = header + target.pixels
        headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))}
    else:
        url = f"{target.http}/v1/models/{target.model}:{target.task}"
        body = target.png
        headers = {"Content-Type": "image/png", "Accept": "application/json"}

    async def call() -> None:
        async with session.post(url, data=body, headers=headers) as response:
            payload = await response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {payload[:200]!r}")

    return call, session.close


async def _drive(target: Target, concurrency: int, warmup_s: float, duration_s: float) -> Load:
    call, close = _grpc_call(target) if target.protocol.startswith("grpc") else _http_call(target, concurrency)
    load = Load()
    start = time.perf_counter()
    measure_from = start + warmup_s
    end = measure_from + duration_s

    async def worker() -> None:
        while (began := time.perf_counter()) < end:
            try:
                await call()
            except Exception as error:  # counted and reported, the load goes on
                if began >= measure_from:
                    load.errors += 1
                    load.first_error = load.first_error or f"{type(error).__name__}: {error}"[:300]
                continue
            if began >= measure_from:
                load.latencies_s.append(time.perf_counter() - began)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    load.elapsed_s = time.perf_counter() - measure_from
    await close()
    return load


def run_client(target: Target, concurrency: int, warmup_s: float, duration_s: float) -> Load:
    """Entry point of one client process."""
    return asyncio.run(_drive(target, concurrency, warmup_s, duration_s))
