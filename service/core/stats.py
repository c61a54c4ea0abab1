"""The counters behind V2 statistics: requests counted by the core, batches counted by the batcher.

Both are plain integers updated on the event loop (requests) or under the batcher's lock (batches), read as
one snapshot by `model_stats`; nanoseconds throughout, as the protocol reports them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .types import BatchSizeStats, ModelStats


@dataclass
class RequestStats:
    """Per served version: every request that reached it, by outcome, with where its time went."""

    success_count: int = 0
    failure_count: int = 0
    success_ns: int = 0
    queue_ns: int = 0
    compute_input_ns: int = 0
    compute_infer_ns: int = 0
    compute_output_ns: int = 0

    def succeeded(self, total_s: float, input_s: float, queue_s: float, infer_s: float, output_s: float) -> None:
        self.success_count += 1
        self.success_ns += int(total_s * 1e9)
        self.compute_input_ns += int(input_s * 1e9)
        self.queue_ns += int(queue_s * 1e9)
        self.compute_infer_ns += int(infer_s * 1e9)
        self.compute_output_ns += int(output_s * 1e9)


@dataclass
class _SizeCounters:
    count: int = 0
    input_ns: int = 0
    infer_ns: int = 0
    output_ns: int = 0


@dataclass
class BatchStats:
    """Per batcher: executed batches, the images in them, and their cost by batch size."""

    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0
    by_size: dict[int, _SizeCounters] = field(default_factory=dict)

    def executed(self, size: int, input_s: float, infer_s: float, output_s: float) -> None:
        self.inference_count += size
        self.execution_count += 1
        self.last_inference_ms = int(time.time() * 1000)
        counters = self.by_size.setdefault(size, _SizeCounters())
        counters.count += 1
        counters.input_ns += int(input_s * 1e9)
        counters.infer_ns += int(infer_s * 1e9)
        counters.output_ns += int(output_s * 1e9)


def snapshot(name: str, version: int, requests: RequestStats, batches: BatchStats) -> ModelStats:
    return ModelStats(
        name=name,
        version=version,
        success_count=requests.success_count,
        failure_count=requests.failure_count,
        success_ns=requests.success_ns,
        queue_ns=requests.queue_ns,
        compute_input_ns=requests.compute_input_ns,
        compute_ns=requests.compute_infer_ns,
        compute_output_ns=requests.compute_output_ns,
        inference_count=batches.inference_count,
        execution_count=batches.execution_count,
        last_inference_ms=batches.last_inference_ms,
        batches=[
            BatchSizeStats(size, c.count, c.input_ns, c.infer_ns, c.output_ns)
            for size, c in sorted(batches.by_size.items())
        ],
    )
