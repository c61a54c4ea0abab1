"""pixelserve against Triton, side by side on the same ONNX file, in one run.

    python3 -m venv .venv-bench && .venv-bench/bin/pip install '.[bench]'     # the anchor, once
    python -m bench.vs_triton --model mnist-classifier --rounds 2
    python -m bench.vs_triton --tls              # both over TLS (Triton: gRPC only, it has no HTTPS)
    python -m bench.vs_triton --before REV       # also pixelserve at an earlier commit, in the same run
    python -m bench.vs_triton --protocols grpc --streaming    # gRPC as bidi streams (ModelStreamInfer)

pixelserve runs with its defaults (`pixelserve serve`), Triton 2.51 (from nvidia-pytriton) with a
Python-backend model running onnxruntime on the same file (max batch 64, 100 us delay, one intra-op thread).
perf_analyzer drives both with batch-1 requests at each concurrency over HTTP and gRPC, in alternating A/B
order (ABBA across rounds) so drift on a shared machine hits both alike; the table gives each system's best
round and the ratio. In the same run: in-process onnxruntime's best throughput on these cores, and the
task API (`:classify` with a PNG, OOD pairing included) against V2 raw tensors, both driven by wrk.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bench import loadgen
from bench.loadgen import Measurement
from bench.overhead import install
from bench.processes import ROOT, BenchEnv, Endpoints, make_tls, pixelserve, triton
from pixelserve.modelspec import MODEL_FILE, SPEC_FILE, ModelSpec


def in_process_best(model_path: Path, shape: list[int], seconds: float = 3.0) -> tuple[float, str]:
    """The most images per second onnxruntime gives on this machine, over thread counts and batch sizes."""
    best, where = 0.0, ""
    for threads in (1, os.cpu_count() or 1):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        for batch in (1, 8, 32, 64):
            x = np.random.default_rng(0).integers(0, 256, (batch, *shape), dtype=np.uint8)
            session.run(None, {"image": x})
            runs, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds / 4:
                session.run(None, {"image": x})
                runs += 1
            rate = runs * batch / (time.perf_counter() - started)
            if rate > best:
                best, where = rate, f"batch {batch}, {threads} thread(s)"
    return best, where


def compare(args: argparse.Namespace, env: BenchEnv, model_dir: Path, name: str, workdir: Path) -> dict:
    results: dict[str, dict[str, list[Measurement]]] = {}
    tls = make_tls(workdir / "tls") if args.tls else None
    with contextlib.ExitStack() as stack:
        ours = stack.enter_context(pixelserve(args.model_repository, args.pixelserve_arg, workdir / "pixelserve.log",
                                              tls=tls))  # fmt: skip
        anchor = stack.enter_context(triton(model_dir, env, workdir, args.triton_max_batch, args.triton_delay_us, tls))
        servers = [ours, anchor]
        if args.before:
            source = install(args.before, workdir / "before")
            stack.callback(subprocess.run, ["git", "-C", str(ROOT), "worktree", "remove", "--force",
                                            str(workdir / "before" / "src")], check=False)  # fmt: skip
            servers.append(
                stack.enter_context(
                    pixelserve(
                        workdir / "before" / "src" / "models",
                        [],
                        workdir / "before.log",
                        name="before",
                        installed=source,
                    )
                )
            )
        if args.other_python or args.other_arg:  # another interpreter, tree or flags: the third column
            other = pixelserve(args.model_repository, args.other_arg or args.pixelserve_arg, workdir / "other.log",
                               name="before", python=args.other_python, cwd=args.other_tree)  # fmt: skip
            servers.append(stack.enter_context(other))
        for round_ in range(args.rounds):
            for protocol in args.protocols:
                for c in args.concurrency:
                    shift = (round_ + c) % len(servers)
                    for server in servers[shift:] + servers[:shift]:
                        url = server.http if protocol == "http" else server.grpc
                        secure = server.tls if protocol == "grpc" or server.https else None
                        url = f"https://{url}" if protocol == "http" and server.https else url
                        streaming = args.streaming and protocol == "grpc"
                        m = loadgen.perf_analyzer(env, url, protocol, name, c, args.interval_ms, secure, streaming)
                        results.setdefault(f"{protocol} c={c}", {}).setdefault(server.name, []).append(m)
                        print(f"round {round_ + 1} {protocol} c={c} {server.name}: {m.throughput:.0f}/s "
                              f"p50 {m.p50_ms:.2f} ms", flush=True)  # fmt: skip
        tasks = task_api(ours, name, model_dir, args)
    return {"perf_analyzer": results, "task_api": tasks}


def task_api(ours: Endpoints, name: str, model_dir: Path, args: argparse.Namespace) -> dict[str, Measurement]:
    """`:classify` with a PNG (decode, OOD partner and all) against V2 binary UINT8, the same wrk load."""
    spec = ModelSpec.load(model_dir / SPEC_FILE)
    shape = spec.input.shape[1:]
    sample = loadgen.sample_requests(shape)
    v2_body, v2_headers, png = sample.v2_body, sample.v2_headers, sample.png
    out = {}
    base = f"{'https' if ours.https else 'http'}://{ours.http}"
    for c in args.concurrency:
        out[f"v2 c={c}"] = loadgen.wrk(f"{base}/v2/models/{name}/infer", v2_body, v2_headers, c,
                                       args.wrk_seconds)  # fmt: skip
        out[f"classify c={c}"] = loadgen.wrk(f"{base}/v1/models/{name}:classify", png,
                                             {"Content-Type": "image/png"}, c, args.wrk_seconds)  # fmt: skip
    return out


def report(run: dict, best: tuple[float, str], args: argparse.Namespace) -> str:
    machine = f"{platform.node()}, {os.cpu_count()} cores ({platform.processor() or platform.machine()})"
    before = any("before" in by_server for by_server in run["perf_analyzer"].values())
    tls = " over TLS (Triton's HTTP: plaintext, it has no HTTPS)" if args.tls else ""
    tls += "; gRPC as bidi streams (ModelStreamInfer)" if args.streaming else ""
    lines = [
        f"machine: {machine}; {time.strftime('%Y-%m-%d %H:%M')}{tls}",
        "",
        "| load | pixelserve /s | p50 ms | Triton /s | p50 ms | throughput ratio |"
        + (" before /s | p50 ms | before ÷ Triton |" if before else ""),
        "|---|---|---|---|---|---|" + ("---|---|---|" if before else ""),
    ]
    for key, by_server in run["perf_analyzer"].items():
        ours = max(by_server["pixelserve"], key=lambda m: m.throughput)
        anchor = max(by_server["triton"], key=lambda m: m.throughput)
        row = (f"| {key} | {ours.throughput:.0f} | {ours.p50_ms:.2f} | {anchor.throughput:.0f} | "
               f"{anchor.p50_ms:.2f} | {ours.throughput / anchor.throughput:.2f}x |")  # fmt: skip
        if before:
            old = max(by_server["before"], key=lambda m: m.throughput)
            row += f" {old.throughput:.0f} | {old.p50_ms:.2f} | {old.throughput / anchor.throughput:.2f}x |"
        lines.append(row)
    lines += ["", f"in-process onnxruntime best: {best[0]:.0f} images/s ({best[1]})"]
    for key, by_server in run["perf_analyzer"].items():
        if key.endswith("c=64"):
            top = max(m.throughput for m in by_server["pixelserve"])
            lines.append(f"  {key}: pixelserve at {top / best[0]:.0%} of it")
    lines += ["", "| wrk load | V2 binary /s | :classify PNG /s | ratio |", "|---|---|---|---|"]
    for c in args.concurrency:
        v2, task = run["task_api"][f"v2 c={c}"], run["task_api"][f"classify c={c}"]
        lines.append(
            f"| c={c} | {v2.throughput:.0f} | {task.throughput:.0f} | {task.throughput / v2.throughput:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=Path, default=ROOT / "models")
    parser.add_argument("--model", default="mnist-classifier")
    parser.add_argument("--bench-env", type=Path, default=ROOT / ".venv-bench", help="venv with the [bench] extra")
    parser.add_argument("--protocols", nargs="+", default=["http", "grpc"], choices=["http", "grpc"])
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 8, 64])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--interval-ms", type=int, default=3000, help="perf_analyzer measurement window")
    parser.add_argument("--wrk-seconds", type=float, default=8.0)
    parser.add_argument("--triton-max-batch", type=int, default=64)
    parser.add_argument("--triton-delay-us", type=int, default=100)
    parser.add_argument("--pixelserve-arg", action="append", default=[], help="extra `pixelserve serve` flag")
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    parser.add_argument("--tls", action="store_true", help="both servers over TLS (certificates made for the run)")
    parser.add_argument("--before", help="also pixelserve at this git revision (its defaults, its models)")
    parser.add_argument("--streaming", action="store_true", help="gRPC as bidi streams (perf_analyzer --streaming)")
    parser.add_argument("--other-python", type=Path, help="also pixelserve on this interpreter (e.g. another grpcio)")
    parser.add_argument("--other-tree", type=Path, default=ROOT, help="the checkout --other-python runs")
    parser.add_argument(
        "--other-arg",
        action="append",
        default=[],
        help="also pixelserve with these flags instead of --pixelserve-arg's (the third column)",
    )
    args = parser.parse_args()
    if args.before and (args.other_python or args.other_arg):
        parser.error("--before and --other-python/--other-arg all fill the third column: use one")
    if args.tls and args.before:
        parser.error("--before runs an earlier pixelserve, which may not have TLS: use one or the other")
    env = BenchEnv(args.bench_env)
    env.check()
    model_dir = max((args.model_repository / args.model).iterdir(), key=lambda p: int(p.name))
    spec = ModelSpec.load(model_dir / SPEC_FILE)
    best = in_process_best(model_dir / MODEL_FILE, spec.input.shape[1:])
    with tempfile.TemporaryDirectory(prefix="vs-triton-") as tmp:
        run = compare(args, env, model_dir, spec.name, Path(tmp))
    print("\n" + report(run, best, args))
    if args.json:
        args.json.write_text(json.dumps(run, default=lambda m: m.__dict__, indent=2))


if __name__ == "__main__":
    main()
