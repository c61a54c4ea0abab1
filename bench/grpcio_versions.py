"""The grpc.aio per-call cost of grpcio releases, alternated in one run: is the pinned grpcio a known regression?

grpc/grpc#43092 reports grpc.aio unary-unary throughput falling from 1.75.0 through 1.83 (up to 7 %), with a fix
in review (grpc/grpc#43222). This measures exactly that shape (empty payloads, identity serializers, no protobuf,
server and client in separate processes on loopback) for each grpcio, each in a virtualenv of its own made with uv:

    python -m bench.grpcio_versions                          # 1.75.0 against the installed grpcio, 5 rounds
    python -m bench.grpcio_versions --versions 1.75.0 1.80.0 --rounds 7 --concurrency 64

Prints calls/s per version and round, then the medians and each one's ratio to the first version.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc

# One server and one client process, run by each virtualenv's own interpreter: the number printed is calls/s.
PROGRAM = r"""
import asyncio, socket, subprocess, sys, time
import grpc

METHOD = "/bench.Bench/Call"

async def handler(request, context):
    return b""

async def serve(port):
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    rpc = grpc.unary_unary_rpc_method_handler(handler)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Bench", {"Call": rpc}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()

async def load(port, concurrency, seconds):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(METHOD)
        await call(b"")
        done = 0
        end = time.perf_counter() + seconds
        async def worker():
            nonlocal done
            while time.perf_counter() < end:
                await call(b"")
                done += 1
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        print(done / (time.perf_counter() - started))

if sys.argv[1] == "serve":
    asyncio.run(serve(int(sys.argv[2])))
else:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    server = subprocess.Popen([sys.executable, __file__, "serve", str(port)])
    time.sleep(1.5)
    try:
        asyncio.run(load(port, int(sys.argv[2]), float(sys.argv[3])))
    finally:
        server.kill()
"""


def virtualenv(version: str, where: Path) -> Path:
    """An interpreter with this grpcio only (uv: seconds, from its cache after the first time)."""
    env = where / f"grpcio-{version}"
    subprocess.run(["uv", "venv", "-q", "--python", sys.executable, str(env)], check=True)
    subprocess.run(["uv", "pip", "install", "-q", "--python", str(env / "bin" / "python"), f"grpcio=={version}"],
                   check=True)  # fmt: skip
    return env / "bin" / "python"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--versions", nargs="+", default=["1.75.0", grpc.__version__])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pixelserve-grpcio-") as tmp:
        program = Path(tmp) / "grpc_calls.py"
        program.write_text(PROGRAM)
        pythons = {v: virtualenv(v, Path(tmp)) for v in args.versions}
        results: dict[str, list[float]] = {v: [] for v in args.versions}
        for i in range(args.rounds):
            order = args.versions if i % 2 == 0 else list(reversed(args.versions))
            for version in order:
                out = subprocess.run([str(pythons[version]), str(program), "load", str(args.concurrency),
                                      str(args.seconds)], capture_output=True, text=True, check=True)  # fmt: skip
                results[version].append(float(out.stdout.strip().splitlines()[-1]))
                print(f"round {i + 1} grpcio {version}: {results[version][-1]:,.0f} calls/s", flush=True)
    base = statistics.median(results[args.versions[0]])
    for version, values in results.items():
        median = statistics.median(values)
        print(f"grpcio {version}: median {median:,.0f} calls/s ({median / base:.3f}x {args.versions[0]}), "
              f"spread {min(values):,.0f}-{max(values):,.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
