"""Where a serving process spends its time under load: py-spy samples `pixelserve serve` while perf_analyzer
drives it, and the busiest functions are printed (own time, and time including callees), per thread.

    python -m bench.profile --protocol http --concurrency 8 --seconds 15

Run it with the other benchmarks' environment (`.venv-bench` for perf_analyzer) and py-spy installed. py-spy
samples without pausing the process (`--nonblocking`), so the profile disturbs the load as little as it can;
idle frames (threads waiting on a lock, a selector or a condition) are left out.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from bench import loadgen
from bench.processes import ROOT, BenchEnv, pixelserve


def _frames(raw: Path) -> tuple[collections.Counter[str], collections.Counter[str], collections.Counter[str], int]:
    """(own samples, inclusive samples, samples per thread) from py-spy's raw (collapsed) output."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread, frames = (frames[0], frames[1:]) if frames[0].startswith("thread") else ("", frames)
        total += count
        threads[thread] += count
        if frames:
            own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    return own, inclusive, threads, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=Path, default=ROOT / "models")
    parser.add_argument("--model", default="mnist-classifier")
    parser.add_argument("--bench-env", type=Path, default=ROOT / ".venv-bench")
    parser.add_argument("--protocol", choices=["http", "grpc"], default="http")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--pixelserve-arg", action="append", default=[], help="extra `pixelserve serve` flag")
    args = parser.parse_args()
    env = BenchEnv(args.bench_env)
    env.check()
    spy = shutil.which("py-spy")
    if spy is None:
        raise SystemExit("py-spy not found: pip install py-spy")
    with tempfile.TemporaryDirectory(prefix="profile-") as tmp:
        work = Path(tmp)
        with pixelserve(args.model_repository, args.pixelserve_arg, work / "server.log") as ours:
            url = ours.http if args.protocol == "http" else ours.grpc
            load = threading.Thread(
                target=loadgen.perf_analyzer,
                args=(env, url, args.protocol, args.model, args.concurrency, (args.seconds + 10) * 1000),
                daemon=True,
            )
            load.start()
            pid = _server_pid(ours.http)
            raw = work / "profile.txt"
            subprocess.run([spy, "record", "--pid", str(pid), "--format", "raw", "--nonblocking", "--threads",
                            "--duration", str(args.seconds), "--rate", "200", "--output", str(raw)],
                           check=True, capture_output=True)  # fmt: skip
        own, inclusive, threads, total = _frames(raw)
    print(f"{args.protocol} c={args.concurrency}, {total} samples over {args.seconds} s (non-idle)")
    print("\nthreads:")
    for thread, count in threads.most_common():
        print(f"  {count / total:6.1%}  {thread}")
    for title, counter in (("own time", own), ("including callees", inclusive)):
        print(f"\ntop {args.top}, {title}:")
        for frame, count in counter.most_common(args.top):
            print(f"  {count / total:6.1%}  {frame}")


def _server_pid(http: str) -> int:
    """The serving process: the one listening on the HTTP port."""
    port = http.rsplit(":", 1)[1]
    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return int(out.split("pid=", 1)[1].split(",", 1)[0])


if __name__ == "__main__":
    main()
