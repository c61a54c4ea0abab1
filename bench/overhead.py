"""What the operations features cost: the same server with each of them off and on, side by side in one run.

    python -m bench.overhead --model mnist-classifier --rounds 3 [--before REV]

Servers (each on its own ports, all up at once; the loads take turns, in a different order each round):
- ``before``: the package as it was at REV (pip-installed into a temporary folder), with its defaults, serving
  the models as committed at REV (the same weights; older model.json files);
- ``off``: today's server with everything off (access log, drift monitoring; tracing and payload logging are off
  by default);
- ``defaults``: today's defaults (access log on, drift monitoring on);
- ``tracing``: defaults plus ``--tracing`` (console exporter into the server's log file);
- ``payloads``: defaults plus payload logging of every request (Parquet shards in a temporary folder);
- ``all``: every operations feature on at once (access log, drift, tracing, payload logging of every request).

wrk drives V2 binary UINT8 and ``:classify`` PNG requests at each concurrency. The table gives each server's
median round and its ratio to ``off`` (and ``off`` to ``before``); at c=1 also the median round's p50 latency.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import loadgen
from bench.processes import ROOT, pixelserve
from pixelserve.modelspec import SPEC_FILE, ModelSpec

OFF = ["--access-log=false", "--drift-monitoring=false"]


def install(rev: str, target: Path) -> Path:
    """The package at `rev`, pip-installed (no dependencies) into `target`."""
    source = target / "src"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(source), rev], check=True,
                   capture_output=True)  # fmt: skip
    installed = target / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(installed), str(source)], check=True)  # fmt: skip
    return installed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=Path, default=ROOT / "models")
    parser.add_argument("--model", default="mnist-classifier")
    parser.add_argument("--concurrency", nargs="+", type=int, default=[8, 64])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", help="a git revision to compare with (its defaults)")
    parser.add_argument("--before-repository", type=Path, help="models for `before` (default: models/ at REV)")
    args = parser.parse_args()
    version_dir = max((args.model_repository / args.model).iterdir(), key=lambda p: int(p.name))
    spec = ModelSpec.load(version_dir / SPEC_FILE)
    shape = spec.input.shape[1:]
    sample = loadgen.sample_requests(shape)
    body, headers, png = sample.v2_body, sample.v2_headers, sample.png
    loads = {
        "v2": (f"/v2/models/{spec.name}/infer", body, headers),
        "classify": (f"/v1/models/{spec.name}:classify", png, {"Content-Type": "image/png"}),
    }
    results: dict[str, dict[str, list[float]]] = {}
    latencies: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="overhead-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        today = args.model_repository
        everything = ["--tracing=true", f"--payload-log-dir={work / 'all-payloads'}", "--payload-log-rate=1"]
        configs: dict[str, tuple[list[str], dict[str, str], Path | None, Path]] = {
            "off": (OFF, {}, None, today),
            "defaults": ([], {}, None, today),
            "tracing": (["--tracing=true"], {"OTEL_TRACES_EXPORTER": "console"}, None, today),
            "payloads": ([f"--payload-log-dir={work / 'payloads'}", "--payload-log-rate=1"], {}, None, today),
            "all": (everything, {"OTEL_TRACES_EXPORTER": "console"}, None, today),
        }
        if args.before:
            installed = install(args.before, work / "before")
            # the models as committed at REV too: that code may not read today's model.json fields
            old = args.before_repository or work / "before" / "src" / "models"
            configs = {"before": ([], {}, installed, old), **configs}
        servers = {
            name: stack.enter_context(
                pixelserve(repository, flags, work / f"{name}.log", name=name, installed=installed, env=env)
            )
            for name, (flags, env, installed, repository) in configs.items()
        }
        for round_ in range(args.rounds):
            names = list(servers)
            names = names[round_ % len(names) :] + names[: round_ % len(names)]  # a different order each round
            for c in args.concurrency:
                for kind, (path, payload, head) in loads.items():
                    for name in names:
                        m = loadgen.wrk(f"http://{servers[name].http}{path}", payload, head, c, args.seconds)
                        results.setdefault(f"{kind} c={c}", {}).setdefault(name, []).append(m.throughput)
                        latencies.setdefault(f"{kind} c={c}", {}).setdefault(name, []).append(m.p50_ms)
                        print(f"round {round_ + 1} {kind} c={c} {name}: {m.throughput:.0f}/s p50 {m.p50_ms:.2f} ms",
                              flush=True)  # fmt: skip
        if args.before:
            with contextlib.suppress(subprocess.CalledProcessError):
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(work / "before" / "src")],
                               check=True, capture_output=True)  # fmt: skip
    print(f"\n{time.strftime('%Y-%m-%d %H:%M')}, {args.model}, {args.rounds} rounds of {args.seconds:g} s, median")
    names = list(next(iter(results.values())))
    print("| load | " + " | ".join(f"{n} /s" for n in names) + " | " + " | ".join(f"{n} ÷ off" for n in names) + " |")
    print("|---" * (1 + 2 * len(names)) + "|")
    for key, by_name in results.items():
        medians = {n: statistics.median(v) for n, v in by_name.items()}
        cells = [f"{medians[n]:.0f}" for n in names] + [f"{medians[n] / medians['off']:.3f}" for n in names]
        print(f"| {key} | " + " | ".join(cells) + " |")
    print("\n| p50 ms | " + " | ".join(names) + " |\n" + "|---" * (1 + len(names)) + "|")
    for key, by_name in latencies.items():
        if key.endswith(" c=1"):
            print(f"| {key} | " + " | ".join(f"{statistics.median(by_name[n]):.3f}" for n in names) + " |")


if __name__ == "__main__":
    main()
