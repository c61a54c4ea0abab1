"""Batch scoring benchmark: `pixelserve score` engines against a plain onnxruntime loop, in one run.

    python -m bench.score_bench --model-repository models --model mnist-classifier

Scores the MNIST test set (10k images) from mnist.npz (tensors, no decoding) and from 10k PNG files (written
once into --png-dir), with the local engine and with Ray in local mode (start-up and steady state reported
apart), and runs a plain onnxruntime loop over the same arrays in batches of the same size. The plain loop runs
the graphs the core runs: the classifier, plus its paired OOD autoencoder when it has one (the core scores
both). The plain loop and the local engine run --repeat rounds, interleaved, and the best round counts; Ray runs
once (its start-up is reported apart from its steady state). Prints a markdown table: images/s and the ratio
to the plain loop, with the machine's load average.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from pixelserve.modelspec import MODEL_FILE, SPEC_FILE, ModelSpec
from pixelserve.service.scoring import engine_local
from pixelserve.service.scoring.cli import ScoreSettings, job_from_settings
from pixelserve.service.scoring.driver import Summary
from pixelserve.service.scoring.sources import open_source

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets" / "mnist.npz"


@dataclass(frozen=True)
class Result:
    name: str
    images: int
    seconds: float
    note: str = ""

    @property
    def rate(self) -> float:
        return self.images / self.seconds


def newest(repository: Path, name: str) -> Path:
    return max((p for p in (repository / name).iterdir() if (p / SPEC_FILE).exists()), key=lambda p: int(p.name))


def plain_loop(repository: Path, model: str, x: np.ndarray, batch: int, threads: int) -> Result:
    """What the core is measured against: sessions made like the server makes them, run back to back."""
    spec = ModelSpec.load(newest(repository, model) / SPEC_FILE)
    models = [model] + (
        [spec.pairing.ood_model] if spec.pairing and (repository / spec.pairing.ood_model).is_dir() else []
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sessions = [
        ort.InferenceSession(str(newest(repository, m) / MODEL_FILE), options, providers=["CPUExecutionProvider"])
        for m in models
    ]
    x = x if x.ndim == 4 else x[..., np.newaxis]
    for s in sessions:
        s.run(None, {"image": x[:batch]})
    started = time.perf_counter()
    for start in range(0, len(x), batch):
        for s in sessions:
            s.run(None, {"image": x[start : start + batch]})
    return Result("plain onnxruntime loop", len(x), time.perf_counter() - started, " + ".join(models))


def score(args: argparse.Namespace, source: Path, output: Path, *extra: str) -> Summary:
    argv = ["--model", args.model, "--model-repository", str(args.model_repository), "--input", str(source),
            "--output", str(output), "--device", "cpu", "--batch-size", str(args.batch_size), "--no-progress",
            "--overwrite", *extra]  # fmt: skip
    job = job_from_settings(ScoreSettings.from_cli(argv))
    src = open_source(job.input, npz_key=job.npz_key)
    if job.engine == "ray":
        from pixelserve.service.scoring import engine_ray

        return engine_ray.run(job, src)
    return engine_local.run(job, src)


def write_pngs(x: np.ndarray, folder: Path) -> Path:
    """10k PNG files, once (reused while the folder holds them all)."""
    from PIL import Image

    if folder.is_dir() and len(list(folder.glob("*.png"))) == len(x):
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i, image in enumerate(x):
        Image.fromarray(image).save(folder / f"{i:05d}.png")
    return folder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-repository", type=Path, default=ROOT / "models")
    p.add_argument("--model", default="mnist-classifier")
    p.add_argument("--data", type=Path, default=DATA, help="mnist.npz")
    p.add_argument("--count", type=int, default=10_000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--png-dir", type=Path, default=Path(tempfile.gettempdir()) / "pixelserve-bench" / "mnist-png")
    p.add_argument("--repeat", type=int, default=3, help="rounds of the plain loop and the local engine (best kept)")
    p.add_argument("--no-ray", action="store_true")
    args = p.parse_args()

    with np.load(args.data) as data:
        x = data["x_test"][: args.count]
    work = Path(tempfile.mkdtemp(prefix="score-bench-"))
    npz = work / "x.npz"
    np.savez(npz, x_test=x)
    pngs = write_pngs(x, args.png_dir)

    # Best of --repeat rounds, plain and local interleaved: on a shared machine the slow rounds measure the
    # neighbours, not us.
    rounds: dict[str, list[Result]] = {}
    for _ in range(args.repeat):
        plain = plain_loop(args.model_repository, args.model, x, args.batch_size, threads=0)
        rounds.setdefault(plain.name, []).append(plain)
        for label, source in (("npz", npz), ("PNG files", pngs)):
            s = score(args, source, work / "local.parquet")
            rounds.setdefault(f"local engine, {label}", []).append(
                Result(f"local engine, {label}", s.scored, s.seconds)
            )
    results = [max(runs, key=lambda r: r.rate) for runs in rounds.values()]
    plain = results[0]
    if not args.no_ray:
        for label, source in (("npz", npz), ("PNG files", pngs)):
            s = score(args, source, work / "ray.parquet", "--engine", "ray")
            assert s.startup_s is not None
            results.append(Result(f"ray (local), {label}, whole run", s.scored, s.seconds, "incl. start-up"))
            results.append(
                Result(
                    f"ray (local), {label}, steady state",
                    s.scored - s.startup_rows,
                    s.seconds - s.startup_s,
                    f"start-up {s.startup_s:.1f} s",
                )
            )
    shutil.rmtree(work, ignore_errors=True)

    load = os.getloadavg()
    print(f"\n{args.model}, {len(x)} images, batch {args.batch_size}, {os.cpu_count()} CPUs ({platform.processor()}), "
          f"load average {load[0]:.1f} / {load[1]:.1f}, onnxruntime {ort.__version__}\n")  # fmt: skip
    print("| run | images/s | ÷ plain | note |")
    print("| --- | ---: | ---: | --- |")
    for r in results:
        print(f"| {r.name} | {r.rate:,.0f} | {r.rate / plain.rate:.2f} | {r.note} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
