"""Soak: a real `pixelserve serve` under steady mixed valid traffic for a long while, its memory watched.

c (default 32) clients run back to back for --duration seconds (default 600), each cycling through the kinds
of traffic the server carries: REST classify of a PNG (the fast path), REST V2 binary tensors, gRPC V2
ModelInfer (raw contents), gRPC task Classify of a PNG and, less often, REST denoise of a PNG (a PNG back).
The server's RSS (its whole process tree, so --workers N counts every worker) is sampled every few seconds;
"start" is the first sample after the warm-up, when sessions, arenas and pools have their working size.

    python -m bench.soak                      # 600 s against a copy of models/
    python -m bench.soak --duration 60 --json soak.json

Prints start, peak and end RSS, growth (end over start) in %, requests and errors per kind. Exit status 1 when
any request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
import numpy as np
from PIL import Image

from bench.loadgen import v2_binary_body
from bench.processes import ROOT, pixelserve
from pixelserve.service.grpc.gen.inference import grpc_service_pb2 as v2_pb
from pixelserve.service.grpc.gen.inference import grpc_service_pb2_grpc as v2_grpc
from pixelserve.service.grpc.gen.pixelserve.v1 import pixelserve_pb2 as pb
from pixelserve.service.grpc.gen.pixelserve.v1 import pixelserve_pb2_grpc as pb_grpc

CLASSIFIER = "mnist-classifier"
DENOISER = "mnist-denoiser"
SIDE = 28
# Each client cycles through this list (starting at its own offset): denoise a fifth as often as each other kind.
CYCLE = ["rest_classify", "rest_v2", "grpc_v2", "grpc_task"] * 5 + ["rest_denoise"]
# Idle pooled connections are dropped before the server's keep-alive timeout (5 s by default) closes them: a
# client that keeps them exactly as long races the server's close, and a POST sent into it fails (ReadError).
KEEPALIVE_EXPIRY_S = 2.0


@dataclass
class Tally:
    requests: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    first_errors: list[str] = field(default_factory=list)

    def failed(self, kind: str, what: str) -> None:
        self.errors[kind] += 1
        if len(self.first_errors) < 10:
            self.first_errors.append(f"{kind}: {what}")


def tree_rss(pid: int) -> int:
    """RSS in bytes of a process and all its descendants (the workers of --workers N)."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        total += next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:"))
        pending += [int(child) for child in children]
    return total


def server_pid(http_port: int) -> int:
    """The server this script started: the process holding the HTTP port's listening socket, or (with
    several workers, which each hold one) its ancestor that is our own child."""
    inode = None
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == http_port:
                inode = fields[9]
    if inode is None:
        raise RuntimeError(f"nothing listens on port {http_port}")
    target = f"socket:[{inode}]"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(fd.readlink().as_posix() == target for fd in (proc / "fd").iterdir()):
                return _our_child(int(proc.name))
        except OSError:
            continue
    raise RuntimeError(f"no process holds the socket of port {http_port}")


def _our_child(pid: int) -> int:
    while (parent := int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])) != os.getpid():
        if parent <= 1:
            raise RuntimeError(f"process {pid} is not one this script started")
        pid = parent
    return pid


def digit_png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(SIDE, SIDE), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


class Traffic:
    """One request of each kind, as coroutines; every answer is checked, not only its status."""

    def __init__(self, http: httpx.AsyncClient, channel: grpc.aio.Channel) -> None:
        self.http = http
        self.v2 = v2_grpc.GRPCInferenceServiceStub(channel)
        self.task = pb_grpc.PixelServeStub(channel)
        self.pngs = [digit_png(seed) for seed in range(16)]
        raw = np.random.default_rng(7).integers(0, 256, size=(1, SIDE, SIDE, 1), dtype=np.uint8).tobytes()
        self.v2_body, self.v2_headers = v2_binary_body("image", [1, SIDE, SIDE, 1], raw)
        tensor = v2_pb.ModelInferRequest.InferInputTensor(name="image", datatype="UINT8", shape=[1, SIDE, SIDE, 1])
        self.v2_request = v2_pb.ModelInferRequest(model_name=CLASSIFIER, inputs=[tensor], raw_input_contents=[raw])

    def kinds(self) -> dict[str, Callable[[int], Awaitable[None]]]:
        return {
            "rest_classify": self.rest_classify,
            "rest_v2": self.rest_v2,
            "grpc_v2": self.grpc_v2,
            "grpc_task": self.grpc_task,
            "rest_denoise": self.rest_denoise,
        }

    async def rest_classify(self, i: int) -> None:
        png = self.pngs[i % len(self.pngs)]
        response = await self.http.post(f"/v1/models/{CLASSIFIER}:classify", content=png,
                                        headers={"Content-Type": "image/png"})  # fmt: skip
        response.raise_for_status()
        assert len(response.json()["results"]) == 1

    async def rest_v2(self, i: int) -> None:
        response = await self.http.post(f"/v2/models/{CLASSIFIER}/infer", content=self.v2_body,
                                        headers=self.v2_headers)  # fmt: skip
        response.raise_for_status()
        assert "Inference-Header-Content-Length" in response.headers

    async def grpc_v2(self, i: int) -> None:
        response = await self.v2.ModelInfer(self.v2_request, timeout=30)
        assert response.outputs and response.raw_output_contents

    async def grpc_task(self, i: int) -> None:
        batch = pb.ImageBatch(images=[pb.Image(encoded=self.pngs[i % len(self.pngs)])])
        response = await self.task.Classify(pb.ClassifyRequest(model=CLASSIFIER, inputs=batch), timeout=30)
        assert len(response.results) == 1

    async def rest_denoise(self, i: int) -> None:
        png = self.pngs[i % len(self.pngs)]
        response = await self.http.post(f"/v1/models/{DENOISER}:denoise", content=png,
                                        headers={"Content-Type": "image/png", "Accept": "image/png"})  # fmt: skip
        response.raise_for_status()
        assert response.content[:4] == b"\x89PNG"


async def client(traffic: Traffic, offset: int, deadline: float, tally: Tally) -> None:
    kinds = traffic.kinds()
    step = offset
    while time.monotonic() < deadline:
        kind = CYCLE[step % len(CYCLE)]
        step += 1
        try:
            await kinds[kind](step)
        except Exception as exc:  # counted and shown, never fatal: the soak goes on
            tally.failed(kind, f"{type(exc).__name__}: {str(exc)[:200]}")
            await asyncio.sleep(0.05)
        tally.requests[kind] += 1


async def sample(pid: int, every_s: float, deadline: float, into: list[tuple[float, int]]) -> None:
    started = time.monotonic()
    while time.monotonic() < deadline:
        into.append((time.monotonic() - started, tree_rss(pid)))
        await asyncio.sleep(every_s)
    into.append((time.monotonic() - started, tree_rss(pid)))


async def soak(http_address: str, grpc_address: str, pid: int, args: argparse.Namespace) -> dict:
    tally = Tally()
    samples: list[tuple[float, int]] = []
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency,
                          keepalive_expiry=KEEPALIVE_EXPIRY_S)  # fmt: skip
    async with (
        httpx.AsyncClient(base_url=f"http://{http_address}", limits=limits, timeout=30) as http,
        grpc.aio.insecure_channel(grpc_address) as channel,
    ):
        traffic = Traffic(http, channel)
        warm_until = time.monotonic() + args.warmup
        await asyncio.gather(*(client(traffic, i, warm_until, Tally()) for i in range(args.concurrency)))
        started = time.monotonic()
        deadline = started + args.duration
        await asyncio.gather(
            sample(pid, args.sample_every, deadline, samples),
            *(client(traffic, i * 3, deadline, tally) for i in range(args.concurrency)),
        )
        elapsed = time.monotonic() - started
        exposition = (await http.get("/metrics")).text
    rss = [value for _, value in samples]
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "duration_s": round(elapsed, 1),
        "concurrency": args.concurrency,
        "server_args": args.server_args,
        "rss_start_mib": round(rss[0] / 2**20, 1),
        "rss_peak_mib": round(max(rss) / 2**20, 1),
        "rss_end_mib": round(rss[-1] / 2**20, 1),
        "rss_growth_pct": round(100 * (rss[-1] - rss[0]) / rss[0], 2),
        "requests": sum(tally.requests.values()),
        "requests_per_s": round(sum(tally.requests.values()) / elapsed, 1),
        "errors": sum(tally.errors.values()),
        "by_kind": {k: {"requests": tally.requests[k], "errors": tally.errors[k]} for k in sorted(tally.requests)},
        "first_errors": tally.first_errors,
        "server_counters": server_counters(exposition),
        "samples": [(round(t, 1), round(v / 2**20, 1)) for t, v in samples],
    }


def server_counters(exposition: str) -> dict[str, float]:
    """What the server counted: closed connections by reason, requests by final code."""
    counted: Counter = Counter()
    for line in exposition.splitlines():
        for name, label in (("pixelserve_connections_closed_total", "reason"), ("pixelserve_requests_total", "code")):
            if line.startswith(name + "{") and (found := re.search(label + r'="([^"]*)"', line)):
                counted[f"{name}{{{label}={found.group(1)}}}"] += float(line.rsplit(" ", 1)[1])
    return dict(sorted(counted.items()))


def report(result: dict) -> str:
    lines = [
        f"soak {result['date']}: {result['duration_s']:.0f} s at c={result['concurrency']}"
        + (f" ({' '.join(result['server_args'])})" if result["server_args"] else ""),
        f"  RSS start {result['rss_start_mib']} MiB, peak {result['rss_peak_mib']} MiB, end {result['rss_end_mib']}"
        f" MiB: growth {result['rss_growth_pct']:+.2f}%",
        f"  requests {result['requests']} ({result['requests_per_s']}/s), errors {result['errors']}",
        *(f"    {kind}: {v['requests']} requests, {v['errors']} errors" for kind, v in result["by_kind"].items()),
        *(f"  error: {e}" for e in result["first_errors"]),
        *(f"  server: {name} {value:g}" for name, value in result["server_counters"].items()),
        *(f"  server log: {line}" for line in result.get("server_log", [])),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of measured traffic")
    parser.add_argument("--concurrency", type=int, default=32, help="clients running back to back")
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds of traffic before the first sample")
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument("--repository", type=Path, default=ROOT / "models", help="model repository (copied)")
    parser.add_argument("--json", type=Path, help="also write the result, with every RSS sample, here")
    parser.add_argument("server_args", nargs="*", help="extra `pixelserve serve` flags, after --")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        repository = Path(shutil.copytree(args.repository, Path(tmp) / "models"))
        with pixelserve(repository, ["--device=cpu", *args.server_args], Path(tmp) / "server.log") as endpoints:
            pid = server_pid(int(endpoints.http.rsplit(":", 1)[1]))
            result = asyncio.run(soak(endpoints.http, endpoints.grpc, pid, args))
        if result["errors"]:  # the server's warnings and errors (it logs nothing else here), for the diagnosis
            result["server_log"] = (Path(tmp) / "server.log").read_text(errors="replace").splitlines()[-40:]
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
