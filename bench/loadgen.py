"""Load generators for the benchmarks, each a real client people already run: perf_analyzer (Triton's own
benchmark, V2 over HTTP and gRPC) and wrk (any HTTP body, for the task API)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from bench.processes import BenchEnv, Tls


@dataclass(frozen=True)
class Measurement:
    throughput: float  # requests (= images, batch 1) per second
    p50_ms: float
    p99_ms: float
    server_queue_us: float = 0.0
    server_compute_us: float = 0.0


def tls_flags(protocol: str, tls: Tls | None) -> list[str]:
    """perf_analyzer's flags for a server certificate from `tls.ca` (None: plaintext)."""
    if tls is None:
        return []
    if protocol == "grpc":
        return ["--ssl-grpc-use-ssl", "true", "--ssl-grpc-root-certifications-file", str(tls.ca)]
    return ["--ssl-https-ca-certificates-file", str(tls.ca)]


def perf_analyzer(
    env: BenchEnv,
    url: str,
    protocol: str,
    model: str,
    concurrency: int,
    interval_ms: int,
    tls: Tls | None = None,
    streaming: bool = False,
    version: str | None = None,
) -> Measurement:
    """One perf_analyzer measurement: batch-1 requests at a fixed concurrency until the window is stable.

    Stable means three windows within 10% of each other, perf_analyzer's default; on a shared VM that can fail for
    a minute at a time, so a failed try is repeated once at 25% (said on stderr), and a second failure raises.
    `version`: the model version to ask for (-x); without it perf_analyzer measures the version whose server
    statistics moved."""
    for stability in (10, 25):
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "report.csv"
            command = [str(env.perf_analyzer), "-m", model, "-u", url, "-i", protocol, "-b", "1",
                       f"--concurrency-range={concurrency}", f"--measurement-interval={interval_ms}",
                       "--max-trials=10", f"--stability-percentage={stability}", "-f", str(report),
                       *tls_flags(protocol, tls), *(["--streaming"] if streaming else []),
                       *(["-x", version] if version else [])]  # fmt: skip
            run = subprocess.run(command, capture_output=True, text=True, env={**os.environ,
                                 "LD_LIBRARY_PATH": env.library_path()}, timeout=600)  # fmt: skip
            if run.returncode == 0 and report.exists():
                (row,) = list(csv.DictReader(report.open()))
                break
            print(f"perf_analyzer {protocol} c={concurrency} {url}: not stable within {stability}%", file=sys.stderr)
    else:
        raise RuntimeError(f"perf_analyzer failed ({run.returncode}):\n{run.stdout[-2000:]}{run.stderr[-2000:]}")
    return Measurement(
        throughput=float(row["Inferences/Second"]),
        p50_ms=float(row["p50 latency"]) / 1000,
        p99_ms=float(row["p99 latency"]) / 1000,
        server_queue_us=float(row["Server Queue"]),
        server_compute_us=float(row["Server Compute Infer"]),
    )


WRK_SCRIPT = """
local f = io.open(os.getenv("BODY_FILE"), "rb")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
for k, v in string.gmatch(os.getenv("HEADERS"), "([^\\n:]+): ([^\\n]+)") do wrk.headers[k] = v end
"""
_WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _wrk_latency(text: str, percentile: str) -> float:
    match = re.search(rf"^\s+{percentile}%\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no {percentile}% latency in wrk output:\n{text}")
    return float(match.group(1)) * _WRK_UNITS[match.group(2)]


def wrk(url: str, body: bytes, headers: dict[str, str], connections: int, seconds: float) -> Measurement:
    """POST the same body over `connections` keep-alive connections for `seconds`; non-2xx answers fail it."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "body").write_bytes(body)
        (Path(tmp) / "post.lua").write_text(WRK_SCRIPT)
        env = {**os.environ, "BODY_FILE": str(Path(tmp) / "body"),
               "HEADERS": "\n".join(f"{k}: {v}" for k, v in headers.items())}  # fmt: skip
        command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s",
                   str(Path(tmp) / "post.lua"), url]  # fmt: skip
        run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=seconds + 60)
    text = run.stdout
    if run.returncode != 0 or "Non-2xx" in text:
        raise RuntimeError(f"wrk failed or got errors:\n{text}{run.stderr}")
    throughput = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    return Measurement(throughput, _wrk_latency(text, "50"), _wrk_latency(text, "99"))


def v2_binary_body(name: str, shape: list[int], raw: bytes) -> tuple[bytes, dict[str, str]]:
    """A V2 infer body with the binary tensor data extension, as tritonclient sends it."""
    tensor = {"name": name, "shape": shape, "datatype": "UINT8", "parameters": {"binary_data_size": len(raw)}}
    wanted = {"name": "probabilities", "parameters": {"binary_data": True}}
    header = json.dumps({"inputs": [tensor], "outputs": [wanted]}).encode()
    headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))}
    return header + raw, headers


@dataclass(frozen=True)
class SampleRequests:
    """One random image of a model's input shape as the two bodies the benchmarks send: V2 binary UINT8 (with its
    headers) for `/infer`, and a PNG for the task API."""

    v2_body: bytes
    v2_headers: dict[str, str]
    png: bytes


def sample_requests(shape: list[int], seed: int = 1) -> SampleRequests:
    pixels = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    png = io.BytesIO()
    Image.fromarray(pixels[..., 0] if shape[-1] == 1 else pixels).save(png, format="PNG")
    body, headers = v2_binary_body("image", [1, *shape], pixels.tobytes())
    return SampleRequests(body, headers, png.getvalue())
