"""pixelserve alone under wrk: V2 binary tensors and `:classify` PNGs at several concurrencies, on any device.

    python -m bench.serving_wrk --model mnist-classifier --device cuda --seconds 8

For machines without the Triton anchor (bench/gpu_check.sh runs it on a lent GPU). Prints images/s, p50 and
p99 for each load, and writes them as JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from bench import loadgen
from bench.processes import ROOT, pixelserve
from pixelserve.modelspec import SPEC_FILE, ModelSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=Path, default=ROOT / "models")
    parser.add_argument("--model", default="mnist-classifier")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 8, 64])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    version_dir = max((args.model_repository / args.model).iterdir(), key=lambda p: int(p.name))
    spec = ModelSpec.load(version_dir / SPEC_FILE)
    shape = spec.input.shape[1:]
    sample = loadgen.sample_requests(shape)
    body, headers, png = sample.v2_body, sample.v2_headers, sample.png
    results = {}
    with tempfile.TemporaryDirectory() as tmp, pixelserve(args.model_repository, [f"--device={args.device}"],
                                                          Path(tmp) / "server.log") as server:  # fmt: skip
        for c in args.concurrency:
            for kind, url, payload, head in (
                ("v2", f"http://{server.http}/v2/models/{spec.name}/infer", body, headers),
                ("classify", f"http://{server.http}/v1/models/{spec.name}:classify", png,
                 {"Content-Type": "image/png"}),
            ):  # fmt: skip
                m = loadgen.wrk(url, payload, head, c, args.seconds)
                results[f"{kind} c={c}"] = m.__dict__
                print(f"{args.device} {kind} c={c}: {m.throughput:.0f}/s p50 {m.p50_ms:.2f} ms p99 {m.p99_ms:.2f} ms")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
