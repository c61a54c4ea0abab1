"""What the REST stack itself costs per request: no network, no decoding, no inference.

The served app (`create_app`: fast path, FastAPI behind it) is called in-process around a core whose tasks answer
at once with a fixed result, so the time is routing, the key, the body limit, upload parsing, options, the
model reference and writing the answer. Requests run one after another on one event loop; each kind is timed
over --rounds rounds of --requests and the best round is reported (the least disturbed by other work).

    python -m bench.rest_stack                  # this tree
    python -m bench.rest_stack --requests 20000

To compare two revisions, run it in a worktree of each (same machine, same minute), e.g.
``git worktree add /tmp/before REV`` and ``PYTHONPATH=/tmp/before python -m bench.rest_stack`` with the package
mapped there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import time
from typing import Any

import numpy as np
from PIL import Image

from pixelserve.service.core.offload import Offloader
from pixelserve.service.core.types import (
    Applied,
    Classification,
    InferResult,
    LabelScore,
    ModelRef,
    ServedBy,
    TaskResult,
)
from pixelserve.service.hooks import Hooks
from pixelserve.service.observe.metrics import Metrics
from pixelserve.service.rest.app import create_app
from pixelserve.service.settings import Settings

SERVED = ServedBy("m", 1)
TOP = [LabelScore(i, str(i), 0.1 * i) for i in range(10)]


class InstantCore:
    """The parts of the core the REST stack calls, answering at once."""

    def __init__(self) -> None:
        self.offload = Offloader(2)
        self.hooks = Hooks()

    def request(self, task: str, model: str, protocol: str) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    async def classify(self, ref: ModelRef, inputs: Any, *, top_k: int | None = None) -> TaskResult:
        item = Classification(TOP[: top_k or 5], 0.01, 0.02, False, 0.3)
        return TaskResult(SERVED, [item] * len(inputs), Applied("stretch", "none"))

    async def infer(self, ref: ModelRef, inputs: Any, outputs: Any = None) -> InferResult:
        probabilities = np.full((len(inputs), 10), 0.1, np.float32)
        return InferResult(SERVED, {"probabilities": probabilities}, labels=[str(i) for i in range(10)])


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


async def _call(app: Any, path: str, body: bytes, headers: dict[str, str], query: bytes) -> int:
    sent: list[dict[str, Any]] = []
    raw_headers = [(k.encode(), v.encode()) for k, v in {**headers, "content-length": str(len(body))}.items()]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "root_path": "", "query_string": query, "headers": raw_headers,
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2), "state": {},
    }  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return int(sent[0]["status"])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    settings = Settings(model_repository="/nonexistent", access_log=False, drift_monitoring=False)
    app = create_app(InstantCore(), settings, Metrics())  # type: ignore[arg-type]
    png = _png()
    v2 = {"inputs": [{"name": "image", "shape": [1, 28, 28, 1], "datatype": "UINT8", "data": [0] * 784}]}
    kinds = {
        ":classify, raw PNG": ("/v1/models/m:classify", png, {"content-type": "image/png"}, b""),
        ":classify, raw PNG ?top_k=3": ("/v1/models/m:classify", png, {"content-type": "image/png"}, b"top_k=3"),
        "V2 infer, JSON": ("/v2/models/m/infer", json.dumps(v2).encode(), {"content-type": "application/json"}, b""),
    }
    for name, (path, body, headers, query) in kinds.items():
        assert await _call(app, path, body, headers, query) == 200, name
        rounds = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            for _ in range(args.requests):
                await _call(app, path, body, headers, query)
            rounds.append((time.perf_counter() - start) / args.requests * 1e6)
        print(f"{name:30s} {min(rounds):6.1f} us/request  (rounds: {', '.join(f'{r:.1f}' for r in sorted(rounds))})")


if __name__ == "__main__":
    asyncio.run(main())
