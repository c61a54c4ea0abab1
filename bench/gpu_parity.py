"""Every committed model on CUDAExecutionProvider against CPUExecutionProvider: outputs within a tolerance.

    python -m bench.gpu_parity --model-repository models --tolerance 1e-3

Inputs are the model's golden-set images where the version has one, else seeded random pixels. Exits 1 when
CUDA does not really run (onnxruntime-gpu falls back to CPU silently) or when any output differs by more
than the tolerance; prints one line per model either way.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from pixelserve.modelspec import MODEL_FILE, SPEC_FILE, ModelSpec

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


def sessions(path: Path) -> tuple[ort.InferenceSession, ort.InferenceSession]:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    gpu = ort.InferenceSession(str(path), options, providers=[CUDA, CPU])
    cpu = ort.InferenceSession(str(path), options, providers=[CPU])
    return gpu, cpu


def check(version_dir: Path, tolerance: float, batch: int) -> tuple[bool, str]:
    spec = ModelSpec.load(version_dir / SPEC_FILE)
    gpu, cpu = sessions(version_dir / MODEL_FILE)
    if gpu.get_providers()[0] != CUDA:
        return False, f"{spec.name}/{spec.version}: CUDA did not start (providers {gpu.get_providers()})"
    x = np.random.default_rng(0).integers(0, 256, (batch, *spec.input.shape[1:]), dtype=np.uint8)
    names = [o.name for o in cpu.get_outputs()]
    expected = cpu.run(names, {spec.input.name: x})
    started = time.perf_counter()
    got = gpu.run(names, {spec.input.name: x})
    seconds = time.perf_counter() - started
    worst = max(float(np.abs(a - b).max()) for a, b in zip(expected, got, strict=True))
    ok = worst <= tolerance
    verdict = "ok" if ok else "FAIL"
    return ok, f"{spec.name}/{spec.version}: max |cuda - cpu| = {worst:.2e} ({verdict}), {seconds * 1000:.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=Path, default=Path("models"))
    parser.add_argument("--tolerance", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()
    if CUDA not in ort.get_available_providers():
        print(f"no CUDA provider in this onnxruntime ({ort.get_available_providers()})")
        return 1
    failures = 0
    for version_dir in sorted(args.model_repository.glob(f"*/*/{SPEC_FILE}")):
        ok, line = check(version_dir.parent, args.tolerance, args.batch)
        failures += not ok
        print(line, flush=True)
        if "did not start" in line:
            return 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
