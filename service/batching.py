"""Dynamic batching: many concurrent requests for one model version become few onnxruntime runs.

One `DynamicBatcher` per served model version. Requests queue (bounded, counted in images); a single worker
flushes a batch when `max_batch_size` images are waiting or `max_queue_delay` has passed since the oldest one
arrived, runs it on a dedicated thread (the event loop never blocks on compute), and hands each request its
slice of the outputs. While a batch runs, new requests accumulate, so load itself grows the batches.

A request's images stay together in one batch; only a request larger than `max_batch_size` is split into
chunks, whose outputs are joined again in order.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from pixelserve.service.errors import DeadlineExceeded, InferenceFailed, ModelNotReady, Overloaded, PayloadTooLarge
from pixelserve.service.metrics import Metrics
from pixelserve.service.runtime import Feeds, RunFn
from pixelserve.service.stats import BatchStats


@dataclass(slots=True)
class Completed:
    """One request's outputs, with how long it queued and how long its batch computed."""

    outputs: Feeds
    queue_s: float
    compute_s: float


@dataclass(eq=False)  # identity: a queued request is found and removed by itself, never by its contents
class _Pending:
    feeds: Feeds
    count: int
    future: asyncio.Future[Completed]
    enqueued: float = field(default_factory=time.perf_counter)


def _concatenate(parts: list[Feeds]) -> Feeds:
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([p[name] for p in parts], axis=0) for name in parts[0]}


class DynamicBatcher:
    def __init__(
        self,
        run: RunFn,
        *,
        model: str,
        version: int,
        max_batch_size: int,
        max_queue_delay_s: float,
        max_queue_size: int,
        timeout_s: float,
        metrics: Metrics | None = None,
    ) -> None:
        self._run = run
        self.model = model
        self.version = version
        self.max_batch_size = max_batch_size
        self.max_queue_delay_s = max_queue_delay_s
        self.max_queue_size = max_queue_size
        self.timeout_s = timeout_s
        self.stats = BatchStats()
        self._metrics = metrics
        self._queue: deque[_Pending] = deque()
        self._queued_images = 0
        self._wakeup = asyncio.Event()
        self._closing = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"batch-{model}-{version}")
        self._avg_batch_s = 0.0
        self._worker = asyncio.get_running_loop().create_task(self._serve(), name=f"batcher-{model}")

    @property
    def queued_images(self) -> int:
        return self._queued_images

    async def submit(self, feeds: Feeds) -> Completed:
        """Run one request's images (batch axis first) and return its outputs.

        Raises Overloaded when the queue is full, DeadlineExceeded after timeout_s (a request still queued is
        dropped, so it never runs), InferenceFailed when its batch failed."""
        count = int(next(iter(feeds.values())).shape[0])
        if self._closing:
            raise ModelNotReady(f"{self.model} version {self.version} is being unloaded")
        if count > self.max_queue_size:
            raise PayloadTooLarge(
                f"{count} images in one request; model {self.model} queues at most {self.max_queue_size}"
            )
        if self._queued_images + count > self.max_queue_size:
            raise Overloaded(
                f"model {self.model} version {self.version} has {self._queued_images} images queued "
                f"(limit {self.max_queue_size}); retry later",
                retry_after=self._retry_after(),
            )
        loop = asyncio.get_running_loop()
        pending = [
            _Pending({k: v[i : i + self.max_batch_size] for k, v in feeds.items()}, 0, loop.create_future())
            for i in range(0, count, self.max_batch_size)
        ]
        for item in pending:
            item.count = int(next(iter(item.feeds.values())).shape[0])
            self._enqueue(item)
        try:
            done, _ = await asyncio.wait([p.future for p in pending], timeout=self.timeout_s)
            if len(done) < len(pending):
                raise DeadlineExceeded(
                    f"model {self.model} did not answer within the {self.timeout_s:g} s request timeout"
                )
            results = [p.future.result() for p in pending]
        except BaseException:
            for item in pending:
                self._drop(item)
            raise
        if len(results) == 1:
            return results[0]
        return Completed(
            _concatenate([r.outputs for r in results]),
            sum(r.queue_s for r in results),
            sum(r.compute_s for r in results),
        )

    def _enqueue(self, item: _Pending) -> None:
        self._queue.append(item)
        self._queued_images += item.count
        self._set_depth()
        self._wakeup.set()

    def _drop(self, item: _Pending) -> None:
        """Forget a request that gave up (deadline, cancellation): it must not run if it is still queued."""
        item.future.cancel()
        if item in self._queue:
            self._queue.remove(item)
            self._queued_images -= item.count
            self._set_depth()

    def _set_depth(self) -> None:
        if self._metrics is not None:
            self._metrics.set_queue_depth(self.model, self.version, self._queued_images)

    def _retry_after(self) -> float:
        """Seconds until the current queue has probably drained, from the recent batch run time."""
        batches = math.ceil(self._queued_images / self.max_batch_size)
        return max(0.1, batches * max(self._avg_batch_s, self.max_queue_delay_s))

    async def _serve(self) -> None:
        while True:
            while not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
            flush_at = self._queue[0].enqueued + self.max_queue_delay_s
            while self._queued_images < self.max_batch_size and not self._closing:
                remaining = flush_at - time.perf_counter()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except TimeoutError:
                    break
            batch = self._take_batch()
            if batch:
                await self._execute(batch)

    def _take_batch(self) -> list[_Pending]:
        batch: list[_Pending] = []
        size = 0
        while self._queue and size + self._queue[0].count <= self.max_batch_size:
            item = self._queue.popleft()
            self._queued_images -= item.count
            if not item.future.done():
                batch.append(item)
                size += item.count
        self._set_depth()
        return batch

    def _run_batch(self, parts: list[Feeds]) -> tuple[Feeds, float, float]:
        """Runs on the worker thread: join, compute, and time both."""
        start = time.perf_counter()
        feeds = _concatenate(parts)
        joined = time.perf_counter()
        outputs = self._run(feeds)
        return outputs, joined - start, time.perf_counter() - joined

    async def _execute(self, batch: list[_Pending]) -> None:
        started = time.perf_counter()
        waits = [started - item.enqueued for item in batch]
        size = sum(item.count for item in batch)
        loop = asyncio.get_running_loop()
        try:
            outputs, join_s, compute_s = await loop.run_in_executor(
                self._executor, self._run_batch, [item.feeds for item in batch]
            )
        except Exception as exc:
            error = InferenceFailed(f"inference failed on a batch of {size} images: {exc}")
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        split_started = time.perf_counter()
        offset = 0
        for item, wait in zip(batch, waits, strict=True):
            if not item.future.done():
                sliced = {k: v[offset : offset + item.count] for k, v in outputs.items()}
                item.future.set_result(Completed(sliced, wait, compute_s))
            offset += item.count
        self._record(size, waits, join_s, compute_s, time.perf_counter() - split_started)

    def _record(self, size: int, waits: list[float], join_s: float, compute_s: float, split_s: float) -> None:
        self.stats.executed(size, join_s, compute_s, split_s)
        weight = 1.0 if self.stats.execution_count == 1 else 0.2
        self._avg_batch_s += weight * (compute_s - self._avg_batch_s)
        if self._metrics is not None:
            self._metrics.observe_batch(self.model, self.version, size=size, queue_s=waits, compute_s=compute_s)

    async def close(self) -> None:
        """Stop taking requests, finish everything already queued, then release the worker thread."""
        self._closing = True
        self._wakeup.set()
        await self._worker
        self._executor.shutdown(wait=True)
