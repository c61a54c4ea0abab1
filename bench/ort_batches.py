"""What one image costs onnxruntime in-process, by batch size and thread count: the floor under any server.

At c=8 a server's batches hold at most 8 images, so the model's cost at batch 1-8 (not its best batch) is what a
gRPC or HTTP front shares the cores with:

    python -m bench.ort_batches --model-repository models --model mnist-classifier
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from pixelserve.modelspec import MODEL_FILE, SPEC_FILE, ModelSpec


def images_per_s(session: ort.InferenceSession, batch: np.ndarray, seconds: float) -> float:
    session.run(None, {"image": batch})
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        session.run(None, {"image": batch})
        done += len(batch)
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-repository", type=Path, default=Path("models"))
    parser.add_argument("--model", default="mnist-classifier")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4, 8, 32])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    folder = max((args.model_repository / args.model).iterdir(), key=lambda p: int(p.name))
    shape = ModelSpec.load(folder / SPEC_FILE).input.shape[1:]
    rng = np.random.default_rng(0)
    print(f"{args.model} v{folder.name}, onnxruntime {ort.__version__}, CPU")
    print("| threads | " + " | ".join(f"batch {b} /s" for b in args.batches) + " |")
    print("|---|" + "---|" * len(args.batches))
    for threads in args.threads:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(folder / MODEL_FILE), options, providers=["CPUExecutionProvider"])
        row = [images_per_s(session, rng.integers(0, 256, (b, *shape), dtype=np.uint8), args.seconds)
               for b in args.batches]  # fmt: skip
        print(f"| {threads} | " + " | ".join(f"{v:,.0f}" for v in row) + " |")


if __name__ == "__main__":
    main()
