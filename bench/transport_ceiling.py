"""How many V2 `ModelInfer` calls per second each gRPC engine can answer at all, with no model behind it.

Issue 24 asks which gRPC engine can carry unary gRPC to 1.5x Triton. The engine's own ceiling settles it: a
stub server answers perf_analyzer's calls with the responses the real pixelserve gave (captured from it at the
start of the run), parsing each request as a real server must and doing nothing else. Engines:

- `grpcio`: grpc.aio with uvloop, pixelserve's engine today;
- `grpcio-sync`: grpcio's threaded server (16 threads), the engine before grpc.aio;
- `native-aio`: pygrpc-native's `aio.server()`, the same handlers on its Rust HTTP/2 front;
- `native-front`: pygrpc-native's low-level `NativeGrpcFront`: calls reach Python in batches, no task per call.

The real pixelserve is measured in the same run, so each ceiling reads against what the whole server does:

    pip install pygrpc-native
    python -m bench.transport_ceiling --model mnist-classifier --rounds 2
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np

from bench import loadgen
from bench.processes import ROOT, BenchEnv, Endpoints, free_port, pixelserve, stop
from service.grpc.gen.inference import grpc_service_pb2 as pb
from service.grpc.gen.inference import grpc_service_pb2_grpc as pb_grpc

SERVICE = "inference.GRPCInferenceService"
ENGINES = ("grpcio", "grpcio-sync", "native-aio", "native-front")


def capture(endpoints: Endpoints, model: str, shape: list[int]) -> dict[str, str]:
    """The real server's serialized answer to every call perf_analyzer makes (hex, by method name)."""
    image = np.zeros([1, *shape[1:]], np.uint8)
    infer = pb.ModelInferRequest(model_name=model, inputs=[pb.ModelInferRequest.InferInputTensor(
        name="image", datatype="UINT8", shape=image.shape)], raw_input_contents=[image.tobytes()])  # fmt: skip
    calls = {
        "ServerLive": pb.ServerLiveRequest(),
        "ServerReady": pb.ServerReadyRequest(),
        "ServerMetadata": pb.ServerMetadataRequest(),
        "ModelReady": pb.ModelReadyRequest(name=model),
        "ModelMetadata": pb.ModelMetadataRequest(name=model),
        "ModelConfig": pb.ModelConfigRequest(name=model),
        "ModelStatistics": pb.ModelStatisticsRequest(name=model),
        "ModelInfer": infer,
    }
    with grpc.insecure_channel(endpoints.grpc) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        return {name: getattr(stub, name)(request).SerializeToString().hex() for name, request in calls.items()}


class Answers:
    """The captured responses. ModelInfer requests are parsed, as any server must; the rest are answered unread.
    Statistics count the calls answered: perf_analyzer measures the version whose success count moved."""

    def __init__(self, captured: dict[str, bytes]) -> None:
        self.captured, self.methods = captured, list(captured)
        self.calls = itertools.count()
        self.answered = 0

    def __call__(self, method: str, payload: bytes) -> bytes:
        if method == "ModelInfer":
            pb.ModelInferRequest.FromString(payload)
            self.answered = next(self.calls) + 1
        elif method == "ModelStatistics":
            stats = pb.ModelStatisticsResponse.FromString(self.captured[method])
            for model in stats.model_stats:
                model.inference_count = model.execution_count = self.answered
                model.inference_stats.success.count = self.answered
            return stats.SerializeToString()
        return self.captured[method]


async def _serve_aio(engine: str, port: int, answers: Answers) -> None:
    if engine == "native-aio":
        import pygrpc_native.aio

        server = pygrpc_native.aio.server()
    else:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])

    def handler(method: str):
        async def answer(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return answers(method, request)

        return grpc.unary_unary_rpc_method_handler(answer)

    server.add_registered_method_handlers(SERVICE, {name: handler(name) for name in answers.methods})
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def _serve_sync(port: int, answers: Answers) -> None:
    from concurrent import futures

    def handler(method: str):
        def answer(request: bytes, context: grpc.ServicerContext) -> bytes:
            return answers(method, request)

        return grpc.unary_unary_rpc_method_handler(answer)

    server = grpc.server(futures.ThreadPoolExecutor(16), options=[("grpc.so_reuseport", 0)])
    server.add_registered_method_handlers(SERVICE, {name: handler(name) for name in answers.methods})
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


def _serve_front(port: int, answers: Answers) -> None:
    from pygrpc_native import EVENT_CALL, NativeGrpcFront

    methods = answers.methods
    front = NativeGrpcFront(f"127.0.0.1:{port}", [(f"/{SERVICE}/{m}", False) for m in methods])
    front.start()
    while (events := front.recv_batch(64)) is not None:
        for kind, call_id, method_id, payload, _ in events:
            if kind == EVENT_CALL:
                front.respond(call_id, answers(methods[method_id], payload))


def serve(engine: str, port: int, answers_file: Path) -> None:
    answers = Answers({k: bytes.fromhex(v) for k, v in json.loads(answers_file.read_text()).items()})
    if engine == "native-front":
        worker = threading.Thread(target=_serve_front, args=(port, answers), daemon=True)
        worker.start()
        worker.join()
        return
    if engine == "grpcio-sync":
        _serve_sync(port, answers)
        return
    import uvloop

    uvloop.run(_serve_aio(engine, port, answers))


@contextlib.contextmanager
def stub(engine: str, answers_file: Path, log: Path) -> Iterator[str]:
    port = free_port()
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "bench.transport_ceiling", "--serve", engine,
                                    "--port", str(port), "--answers", str(answers_file)],
                                   stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)  # fmt: skip
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            pb_grpc.GRPCInferenceServiceStub(channel).ServerLive(pb.ServerLiveRequest(), timeout=10)
        yield f"127.0.0.1:{port}"
    finally:
        stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-repository", type=Path, default=ROOT / "models")
    parser.add_argument("--model", default="mnist-classifier")
    parser.add_argument("--bench-env", type=Path, default=ROOT / ".venv-bench")
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    parser.add_argument("--concurrency", nargs="+", type=int, default=[8, 64])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--interval-ms", type=int, default=3000)
    parser.add_argument("--serve", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--answers", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.answers)
        return
    env = BenchEnv(args.bench_env)
    env.check()
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="pixelserve-ceiling-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        real = stack.enter_context(pixelserve(args.model_repository, [], work / "pixelserve.log"))
        latest = max(int(p.name) for p in (args.model_repository / args.model).iterdir() if p.name.isdigit())
        spec = json.loads((args.model_repository / args.model / str(latest) / "model.json").read_text())
        answers = work / "answers.json"
        answers.write_text(json.dumps(capture(real, args.model, spec["inputs"][0]["shape"])))
        servers = {"pixelserve": real.grpc}
        for engine in args.engines:
            servers[engine] = stack.enter_context(stub(engine, answers, work / f"{engine}.log"))
        names = list(servers)
        for round_ in range(args.rounds):
            for c in args.concurrency:
                shift = (round_ + c) % len(names)
                for name in names[shift:] + names[:shift]:
                    m = loadgen.perf_analyzer(env, servers[name], "grpc", args.model, c, args.interval_ms,
                                              version=str(latest))  # fmt: skip
                    results.setdefault(f"grpc c={c}", {}).setdefault(name, []).append(m.throughput)
                    print(f"round {round_ + 1} c={c} {name}: {m.throughput:.0f}/s p50 {m.p50_ms:.2f} ms", flush=True)
    print("\n| load | " + " | ".join(f"{n} /s" for n in names) + " |")
    print("|---|" + "---|" * len(names))
    for load, row in results.items():
        print(f"| {load} | " + " | ".join(f"{max(row[n]):,.0f}" for n in names) + " |")


if __name__ == "__main__":
    main()
