"""A model repository in S3 against the same repository in a folder: start-up to ready, and a new version
swapped in under load. The store is moto's S3 API server on loopback (tests/s3_support.py), so the figures
are the server's own cost (listing, download, digests, gate), not a network's.

    python -m bench.object_store                     # 3 rounds, c=8 during the swap
    python -m bench.object_store --rounds 5 --clients 16 --json store.json

Per round: a fresh server on s3://…/repo (the committed mnist-classifier as version 2) and one on a local copy,
each timed from process start to /v2/health/ready 200; then, on the S3 server, c clients classify real digits while
version 3 is uploaded (model.json last), timed from the last PUT to the first answer by version 3, with every answer
kept.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np

from pixelserve.modelspec import SPEC_FILE, ModelSpec
from tests.s3_support import S3Server, s3_server
from tests.service.rest_support import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "models" / "mnist-classifier" / "3"
NAME, BUCKET, PREFIX = "mnist-classifier", "models", "bench/repo"


def _digits() -> list[bytes]:
    with np.load(SOURCE / "golden.npz") as golden:
        offsets, blob = golden["offsets"], golden["encoded"].tobytes()
    return [blob[offsets[i] : offsets[i + 1]] for i in range(16)]


def _started(repository: str | Path, where: Path, env: dict[str, str], *args: str) -> tuple[ServerProcess, float]:
    started = time.perf_counter()
    server = ServerProcess(repository, where / "server.log", "--reload-interval-s", "0.5", *args, env=env)  # type: ignore[arg-type]
    server.wait_ready(timeout_s=120)
    return server, time.perf_counter() - started


def _swap(server: ServerProcess, s3: S3Server, version_dir: Path, clients: int) -> dict[str, float]:
    answers: Counter[str] = Counter()
    latencies: list[float] = []
    first_new: list[float] = []
    stop = threading.Event()
    digits = _digits()

    def client() -> None:
        with httpx.Client(timeout=30) as http:
            i = 0
            while not stop.is_set():
                t = time.perf_counter()
                try:
                    r = http.post(f"{server.url}/v1/models/{NAME}:classify", content=digits[i % len(digits)])
                    key = (
                        f"{r.status_code}/v{r.json()['model']['version']}"
                        if r.status_code == 200
                        else str(r.status_code)
                    )
                except httpx.TransportError:
                    key = "transport-error"
                latencies.append(time.perf_counter() - t)
                answers[key] += 1
                if key == "200/v3" and not first_new:
                    first_new.append(time.perf_counter())
                i += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    s3.upload_dir(version_dir, BUCKET, f"{PREFIX}/{NAME}/3")
    uploaded = time.perf_counter()
    deadline = uploaded + 60
    while not first_new and time.perf_counter() < deadline:
        time.sleep(0.02)
    time.sleep(2.0)
    stop.set()
    for t in threads:
        t.join()
    fetched = re.search(r"fetched mnist-classifier version 3 .*: ([\d.]+) MB in (\d+) ms", server.log())
    loaded = re.search(r"serving mnist-classifier version 3 .*\(loaded in (\d+) ms", server.log())
    ordered = sorted(latencies)
    return {
        "upload_to_first_v3_s": (first_new[0] - uploaded) if first_new else float("nan"),
        "fetch_ms": float(fetched.group(2)) if fetched else float("nan"),
        "load_ms": float(loaded.group(1)) if loaded else float("nan"),
        "requests": float(sum(answers.values())),
        "errors": float(sum(n for k, n in answers.items() if not k.startswith("200/"))),
        "p50_ms": ordered[len(ordered) // 2] * 1000,
        "p99_ms": ordered[int(len(ordered) * 0.99)] * 1000,
        "max_ms": ordered[-1] * 1000,
    }


def renumbered(folder: Path, version: int) -> Path:
    """The committed classifier as another version number: same files, model.json renumbered and re-stamped."""
    shutil.copytree(SOURCE, folder)
    ModelSpec.load(folder / SPEC_FILE).model_copy(update={"version": version}).write(folder)
    return folder


def one_round(where: Path, clients: int) -> dict[str, float]:
    local = where / "local"
    v2, v3 = renumbered(where / "v2", 2), renumbered(where / "v3", 3)
    shutil.copytree(v2, local / NAME / "2")
    with s3_server(where / "moto.log") as s3:
        s3.client.create_bucket(Bucket=BUCKET)
        s3.upload_dir(v2, BUCKET, f"{PREFIX}/{NAME}/2")
        server, local_s = _started(local, where / "l", {})
        server.close()
        (where / "s").mkdir()
        server, s3_s = _started(f"s3://{BUCKET}/{PREFIX}", where / "s", s3.env, "--model-cache-dir", str(where / "c"))
        try:
            swap = _swap(server, s3, v3, clients)
        finally:
            server.close()
    return {"ready_local_s": local_s, "ready_s3_s": s3_s, **swap}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rounds = []
    for i in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="pixelserve-store-bench-") as tmp:
            (Path(tmp) / "l").mkdir()
            result = one_round(Path(tmp), args.clients)
        rounds.append(result)
        print(f"round {i + 1}: " + ", ".join(f"{k} {v:.3g}" for k, v in result.items()), flush=True)
    medians = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    print("median: " + ", ".join(f"{k} {v:.3g}" for k, v in medians.items()))
    if args.json:
        args.json.write_text(json.dumps({"rounds": rounds, "median": medians}, indent=2))


if __name__ == "__main__":
    main()
