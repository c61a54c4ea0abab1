"""Serving benchmark: a real `python -m pixelserve.service` process over gRPC and HTTP, against in-process onnxruntime.

    python -m bench.serve_bench --model-repository models --model mnist-classifier --duration 10

For each protocol (gRPC task API, gRPC V2, HTTP task API, HTTP V2) and each concurrency it sends batch-1
requests for a fixed time and reports images/s, p50 and p99 latency. In the same run it reads the batch sizes the
server's dynamic batcher formed (the pixelserve_batch_size histogram on /metrics) and measures in-process
onnxruntime on the same model file at those batch sizes and at batch 1, so the table shows what the serving
stack costs. Load comes from separate client processes (grpc.aio / aiohttp, many calls in flight per event
loop) so the client is not the bottleneck; give it more with --client-processes on a machine with spare cores.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from bench.serve_clients import Target, free_port, run_client
from pixelserve.modelspec import MODEL_FILE, SPEC_FILE, ModelSpec

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = "mnist-classifier"
PROTOCOLS = ("grpc", "grpc-v2", "http", "http-v2")
DESCRIBED = {
    "grpc": "gRPC task API, PNG",
    "grpc-v2": "gRPC V2, raw UINT8",
    "http": "HTTP task API, PNG body",
    "http-v2": "HTTP V2, binary UINT8",
}


# -- server side ----------------------------------------------------------------------------------------


class Server:
    """`python -m pixelserve.service` in a subprocess on free ports, stopped with SIGTERM (its graceful path)."""

    def __init__(self, repository: Path, extra_args: list[str]) -> None:
        self.http_port, self.grpc_port = free_port(), free_port()
        self.http = f"http://127.0.0.1:{self.http_port}"
        self.grpc = f"127.0.0.1:{self.grpc_port}"
        command = [
            sys.executable,
            "-m",
            "pixelserve.service",
            f"--model-repository={repository}",
            "--http-host=127.0.0.1",
            f"--http-port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
            "--hot-reload=false",
            "--log-level=warning",
            *extra_args,
        ]
        self.process = subprocess.Popen(command, cwd=ROOT)

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with status {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.http}/v2/health/ready", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError("server did not become ready")

    def batch_histogram(self, model: str) -> tuple[float, float]:
        """(sum, count) of the batch sizes formed so far for the model, over all its versions."""
        with urllib.request.urlopen(f"{self.http}/metrics", timeout=10) as response:
            text = response.read().decode()
        totals = {"sum": 0.0, "count": 0.0}
        pattern = re.compile(r"^pixelserve_batch_size_(sum|count)\{([^}]*)\} (\S+)$", re.MULTILINE)
        for kind, labels, value in pattern.findall(text):
            if f'model="{model}"' in labels:
                totals[kind] += float(value)
        return totals["sum"], totals["count"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# -- in-process reference -------------------------------------------------------------------------------


def providers_for(device: str) -> list[str]:
    available = ort.get_available_providers()
    if device in ("auto", "cuda", "tensorrt") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def onnxruntime_throughput(session: ort.InferenceSession, image: np.ndarray, batch: int, seconds: float) -> float:
    """Images/s of session.run on a batch of copies of one image, the graph alone (no decode, no server)."""
    feed = {"image": np.repeat(image[np.newaxis], batch, axis=0)}
    for _ in range(3):
        session.run(None, feed)
    runs = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or runs < 5:
        session.run(None, feed)
        runs += 1
    return runs * batch / elapsed


# -- orchestration --------------------------------------------------------------------------------------


@dataclass
class Row:
    protocol: str
    concurrency: int
    requests: int
    errors: int
    images_per_s: float
    p50_ms: float
    p99_ms: float
    mean_batch: float
    ort_formed_images_per_s: float = math.nan
    ort_batch1_images_per_s: float = math.nan
    first_error: str = ""


def measure(
    server: Server, target: Target, concurrency: int, args: argparse.Namespace, pool: ProcessPoolExecutor
) -> Row:
    processes = max(1, min(args.client_processes, concurrency))
    shares = [concurrency // processes + (i < concurrency % processes) for i in range(processes)]
    before = server.batch_histogram(target.model)
    futures = [pool.submit(run_client, target, share, args.warmup, args.duration) for share in shares]
    loads = [f.result() for f in futures]
    after = server.batch_histogram(target.model)
    latencies = np.array([x for load in loads for x in load.latencies_s])
    elapsed = max(load.elapsed_s for load in loads)
    batches = after[1] - before[1]
    return Row(
        protocol=target.protocol,
        concurrency=concurrency,
        requests=len(latencies),
        errors=sum(load.errors for load in loads),
        images_per_s=len(latencies) / elapsed if elapsed > 0 else 0.0,
        p50_ms=float(np.percentile(latencies, 50) * 1000) if len(latencies) else math.nan,
        p99_ms=float(np.percentile(latencies, 99) * 1000) if len(latencies) else math.nan,
        mean_batch=(after[0] - before[0]) / batches if batches else math.nan,
        first_error=next((load.first_error for load in loads if load.first_error), ""),
    )


def resolve_model(args: argparse.Namespace, scratch: Path) -> tuple[Path, str]:
    """The asked model, or models/mnist-classifier, or a tiny onnx.helper classifier when neither exists."""
    repository = Path(args.model_repository)
    model = args.model or DEFAULT_MODEL
    if (repository / model).is_dir():
        return repository, model
    if args.model:
        raise SystemExit(f"no model {args.model!r} in {repository}")
    from tests.service.models import CLASSIFIER, build_repository

    print(f"{repository / DEFAULT_MODEL} not found; benchmarking the tiny test classifier instead", file=sys.stderr)
    return build_repository(scratch / "models"), CLASSIFIER


def latest_version(repository: Path, model: str) -> Path:
    versions = sorted((p for p in (repository / model).iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    return versions[-1]


def sample_image(spec: ModelSpec, seed: int = 0) -> np.ndarray:
    pre = spec.preprocessing
    return np.random.default_rng(seed).integers(0, 256, size=(pre.height, pre.width, pre.channels), dtype=np.uint8)


def png_of(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="PNG")
    return buffer.getvalue()


def fmt(value: float, digits: int = 1) -> str:
    return "-" if math.isnan(value) else f"{value:,.{digits}f}"


def ratio(a: float, b: float) -> str:
    return "-" if math.isnan(a) or math.isnan(b) or b == 0 else f"{a / b:.3g}"


def table(rows: list[Row]) -> str:
    lines = [
        "| protocol | conc. | requests | errors | img/s | p50 ms | p99 ms | mean batch | ORT img/s @batch "
        "| server ÷ ORT@batch | ORT img/s @1 | server ÷ ORT@1 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {DESCRIBED[r.protocol]} | {r.concurrency} | {r.requests:,} | {r.errors} | {fmt(r.images_per_s)} "
            f"| {fmt(r.p50_ms, 2)} | {fmt(r.p99_ms, 2)} | {fmt(r.mean_batch, 2)} | {fmt(r.ort_formed_images_per_s)} "
            f"| {ratio(r.images_per_s, r.ort_formed_images_per_s)} | {fmt(r.ort_batch1_images_per_s)} "
            f"| {ratio(r.images_per_s, r.ort_batch1_images_per_s)} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", default="models", help="repository the server loads")
    parser.add_argument("--model", help=f"model to drive (default {DEFAULT_MODEL}, else a tiny test model)")
    parser.add_argument("--protocols", default=",".join(PROTOCOLS), help=f"comma list of {', '.join(PROTOCOLS)}")
    parser.add_argument("--concurrency", default="1,8,64", help="comma list of in-flight request counts")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per protocol and level")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each measurement")
    parser.add_argument("--client-processes", type=int, default=1, help="load-generator processes per level")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda", "tensorrt"])
    parser.add_argument("--ort-seconds", type=float, default=2.0, help="in-process measurement time per batch")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument(
        "--server-arg", action="append", default=[], help="extra flag for `python -m pixelserve.service`, repeatable"
    )
    args = parser.parse_args(argv)
    unknown = set(args.protocols.split(",")) - set(PROTOCOLS)
    if unknown:
        parser.error(f"unknown protocols {sorted(unknown)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        repository, model = resolve_model(args, Path(scratch))
        version_dir = latest_version(repository, model)
        spec = ModelSpec.load(version_dir / SPEC_FILE)
        image = sample_image(spec)
        target_of = {
            protocol: Target(
                protocol=protocol,
                http="",
                grpc="",
                model=model,
                task=spec.task,
                png=png_of(image),
                pixels=image.tobytes(),
                shape=(1, *image.shape),
            )
            for protocol in args.protocols.split(",")
        }
        server = Server(repository, [f"--device={args.device}", *args.server_arg])
        rows: list[Row] = []
        try:
            server.wait_ready()
            spawn = get_context("spawn")
            with ProcessPoolExecutor(max_workers=max(1, args.client_processes), mp_context=spawn) as pool:
                for protocol, target in target_of.items():
                    target = Target(**{**asdict(target), "http": server.http, "grpc": server.grpc})
                    for concurrency in (int(c) for c in args.concurrency.split(",")):
                        row = measure(server, target, concurrency, args, pool)
                        rows.append(row)
                        print(
                            f"{protocol:8} c={concurrency:<3} {fmt(row.images_per_s):>10} img/s "
                            f"p50 {fmt(row.p50_ms, 2)} ms p99 {fmt(row.p99_ms, 2)} ms batch {fmt(row.mean_batch, 2)}"
                            + (f" errors {row.errors} ({row.first_error})" if row.errors else ""),
                            file=sys.stderr,
                        )
        finally:
            server.stop()

        session = ort.InferenceSession(str(version_dir / MODEL_FILE), providers=providers_for(args.device))
        throughput: dict[int, float] = {}
        for row in rows:
            batches = [1] + ([max(1, round(row.mean_batch))] if not math.isnan(row.mean_batch) else [])
            for batch in batches:
                if batch not in throughput:
                    throughput[batch] = onnxruntime_throughput(session, image, batch, args.ort_seconds)
            row.ort_batch1_images_per_s = throughput[1]
            if not math.isnan(row.mean_batch):
                row.ort_formed_images_per_s = throughput[max(1, round(row.mean_batch))]

    print(
        f"\nmodel {model} ({spec.task}, input {spec.input.shape}), server device {args.device}, "
        f"in-process provider {session.get_providers()[0]}, {os.cpu_count()} CPUs ({platform.machine()})"
        f"\n{args.duration:g}s per level after {args.warmup:g}s warm-up, batch-1 requests, "
        f"{args.client_processes} client process(es); ORT@batch = in-process onnxruntime at the mean batch the "
        "server's batcher formed\n"
    )
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
