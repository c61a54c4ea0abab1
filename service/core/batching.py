"""Adaptive dynamic batching: many concurrent requests for one model version become few onnxruntime runs.

One `DynamicBatcher` per served model version, with one worker thread per session instance. A request joins
a bounded queue (counted in images). An idle worker takes everything queued at once (up to `max_batch_size`)
and runs it; requests that arrive while batches run form the next batch, so load itself grows the batches and
a lone request pays no batching delay. A worker waits for more requests only where it pays: when recent
batches were larger than what is queued (more requests are on their way), and never past `max_queue_delay`
from the oldest request. That wait happens in the worker thread on a condition variable, whose timeout is
exact, not on the event loop, whose timers round up to a whole millisecond. The `fill` policy instead waits
for a full batch, as Triton's dynamic batcher does.

Guarantees: the queue is bounded (Overloaded with a Retry-After estimate), every request has a deadline
(DeadlineExceeded; a request still queued at its deadline is dropped, so it never runs), a failed batch fails
each of its requests (InferenceFailed), and a request larger than `max_batch_size` is split into chunks whose
outputs are joined again in order. A request's images otherwise stay together in one batch. Requests that
arrive in the same event-loop turn are handed over together, so a burst forms one batch.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DeadlineExceeded, InferenceFailed, ModelNotReady, Overloaded, PayloadTooLarge
from ..observe.metrics import BatchMetrics
from .runtime import Feeds, RunFn
from .stats import BatchStats
from .types import BatchPolicy

if TYPE_CHECKING:
    from ..hooks import BatchObserver

log = logging.getLogger(__name__)

EWMA_WEIGHT = 0.2  # how fast the expected batch size and batch time follow the load


@dataclass(slots=True)
class Completed:
    """One request's outputs, with how long it queued and how long its batch computed."""

    outputs: Feeds
    queue_s: float
    compute_s: float
    batch_start_ns: int = 0  # wall clock of the batch, when a batch observer is set; else 0
    batch_end_ns: int = 0
    batch: Any = None  # what the batch observer returned for this batch (opaque here)


class _Pending:
    """A queued request (or one chunk of a large one). Identity matters: it is found and removed by itself."""

    __slots__ = ("context", "count", "enqueued", "feeds", "future")

    def __init__(self, feeds: Feeds, count: int, future: asyncio.Future[Completed], context: Any = None) -> None:
        self.feeds = feeds
        self.count = count
        self.future = future
        self.context = context  # the request's context, opaque here: handed to the batch observer
        self.enqueued = time.perf_counter()


def _concatenate(parts: Sequence[Feeds]) -> Feeds:
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([p[name] for p in parts], axis=0) for name in parts[0]}


class DynamicBatcher:
    def __init__(
        self,
        run: RunFn | Sequence[RunFn],
        *,
        model: str,
        version: int,
        max_batch_size: int,
        max_queue_delay_s: float,
        max_queue_size: int,
        timeout_s: float,
        policy: BatchPolicy = "adaptive",
        metrics: BatchMetrics | None = None,
        on_batch: BatchObserver | None = None,
    ) -> None:
        runners = list(run) if isinstance(run, Sequence) else [run]
        self.model = model
        self.version = version
        self.max_batch_size = max_batch_size
        self.max_queue_delay_s = max_queue_delay_s
        self.max_queue_size = max_queue_size
        self.timeout_s = timeout_s
        self.policy = policy
        self.stats = BatchStats()
        self._metrics = metrics
        self._on_batch = on_batch
        self._loop = asyncio.get_running_loop()
        self._queue: deque[_Pending] = deque()
        self._queued_images = 0
        self._cond = threading.Condition()
        self._handover_pending = False
        self._closing = False
        self._expected_batch = 1.0  # recent batch sizes: waiting pays only below this
        self._avg_batch_s = 0.0
        self._workers = [
            threading.Thread(target=self._work, args=(runner,), name=f"batch-{model}-{version}-{i}", daemon=True)
            for i, runner in enumerate(runners)
        ]
        for worker in self._workers:
            worker.start()

    @property
    def queued_images(self) -> int:
        return self._queued_images

    @property
    def instances(self) -> int:
        return len(self._workers)

    # -- the event loop's side ---------------------------------------------------------------------------

    async def submit(self, feeds: Feeds, context: Any = None) -> Completed:
        """Run one request's images (batch axis first) and return its outputs. `context` goes to the batch
        observer with the batch that runs them.

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
        if count <= self.max_batch_size:
            item = _Pending(feeds, count, self._loop.create_future(), context)
            self._enqueue((item,))
            timer = self._loop.call_at(self._loop.time() + self.timeout_s, self._expire, item)
            try:
                return await item.future
            except BaseException:
                self._drop(item)
                raise
            finally:
                timer.cancel()
        return await self._submit_chunks(feeds, count, context)

    async def _submit_chunks(self, feeds: Feeds, count: int, context: Any) -> Completed:
        size = self.max_batch_size
        chunks = [
            _Pending(
                {k: v[i : i + size] for k, v in feeds.items()},
                min(size, count - i),
                self._loop.create_future(),
                context,
            )
            for i in range(0, count, size)
        ]
        self._enqueue(chunks)
        try:
            done, _ = await asyncio.wait([c.future for c in chunks], timeout=self.timeout_s)
            if len(done) < len(chunks):
                raise self._deadline()
            results = [c.future.result() for c in chunks]
        except BaseException:
            for chunk in chunks:
                self._drop(chunk)
            raise
        return Completed(
            _concatenate([r.outputs for r in results]),
            sum(r.queue_s for r in results),
            sum(r.compute_s for r in results),
            min(r.batch_start_ns for r in results),
            max(r.batch_end_ns for r in results),
            results[0].batch,
        )

    def _enqueue(self, items: Sequence[_Pending]) -> None:
        with self._cond:
            self._queue.extend(items)
            self._queued_images += sum(item.count for item in items)
            depth = self._queued_images
        self._set_depth(depth)
        if not self._handover_pending:
            # Hand over at the end of this loop turn, so requests arriving together form one batch.
            self._handover_pending = True
            self._loop.call_soon(self._handover)

    def _handover(self) -> None:
        self._handover_pending = False
        with self._cond:
            self._cond.notify()

    def _deadline(self) -> DeadlineExceeded:
        return DeadlineExceeded(f"model {self.model} did not answer within the {self.timeout_s:g} s request timeout")

    def _expire(self, item: _Pending) -> None:
        if not item.future.done():
            item.future.set_exception(self._deadline())
        self._drop(item)

    def _drop(self, item: _Pending) -> None:
        """Forget a request that gave up (deadline, cancellation): it must not run if it is still queued."""
        if not item.future.done():
            item.future.cancel()
        with self._cond:
            try:
                self._queue.remove(item)
            except ValueError:
                return  # already taken by a worker
            self._queued_images -= item.count
            depth = self._queued_images
        self._set_depth(depth)

    def _set_depth(self, depth: int) -> None:
        if self._metrics is not None:
            self._metrics.set_queue_depth(depth)

    def _retry_after(self) -> float:
        """Seconds until the current queue has probably drained, from the recent batch run time."""
        batches = math.ceil(self._queued_images / self.max_batch_size / max(1, len(self._workers)))
        return max(0.1, batches * max(self._avg_batch_s, self.max_queue_delay_s))

    # -- the worker threads' side ------------------------------------------------------------------------

    def _take(self) -> list[_Pending] | None:
        """Block until there is work (None: closed and drained), wait where it pays, take one batch."""
        with self._cond:
            while not self._queue:
                if self._closing:
                    return None
                self._cond.wait()
            deadline = self._queue[0].enqueued + self.max_queue_delay_s
            # whole requests only: the average decays towards 1 after a burst but never reaches it, and a
            # fraction above the queued count would make every lone request wait the whole delay
            expected = int(self._expected_batch + 1e-6)
            target = self.max_batch_size if self.policy == "fill" else min(self.max_batch_size, expected)
            while (
                not self._closing and self._queued_images < target and (remaining := deadline - time.perf_counter()) > 0
            ):
                self._cond.wait(remaining)
            batch: list[_Pending] = []
            size = 0
            while self._queue and size + self._queue[0].count <= self.max_batch_size:
                item = self._queue.popleft()
                self._queued_images -= item.count
                if not item.future.done():  # expired or cancelled meanwhile: it never runs
                    batch.append(item)
                    size += item.count
            depth = self._queued_images
        self._set_depth(depth)
        return batch

    def _work(self, run: RunFn) -> None:
        while (batch := self._take()) is not None:
            if batch:
                self._execute(run, batch)

    def _execute(self, run: RunFn, batch: list[_Pending]) -> None:
        started = time.perf_counter()
        started_ns = time.time_ns() if self._on_batch is not None else 0
        size = sum(item.count for item in batch)
        try:
            feeds = _concatenate([item.feeds for item in batch])
            joined = time.perf_counter()
            outputs = run(feeds)
        except Exception as exc:
            error = InferenceFailed(f"inference failed on a batch of {size} images: {exc}")
            self._loop.call_soon_threadsafe(self._fail, batch, error)
            return
        computed = time.perf_counter()
        compute_s = computed - joined
        observed, ended_ns = None, 0
        if self._on_batch is not None:
            ended_ns = started_ns + int((computed - started) * 1e9)
            try:
                observed = self._on_batch(started_ns, ended_ns, [item.context for item in batch], size)
            except Exception:  # an operations hook never fails a batch
                log.exception("batch observer failed")
        results = []
        offset = 0
        for item in batch:
            sliced = {k: v[offset : offset + item.count] for k, v in outputs.items()}
            results.append(Completed(sliced, started - item.enqueued, compute_s, started_ns, ended_ns, observed))
            offset += item.count
        # Counted before delivery, so statistics read after a response always include its batch.
        self._record(size, [r.queue_s for r in results], joined - started, compute_s, time.perf_counter() - computed)
        self._loop.call_soon_threadsafe(self._deliver, batch, results)

    def _record(self, size: int, waits: list[float], join_s: float, compute_s: float, split_s: float) -> None:
        self.stats.executed(size, join_s, compute_s, split_s)
        self._expected_batch += EWMA_WEIGHT * (size - self._expected_batch)
        first = self.stats.execution_count == 1
        self._avg_batch_s += (1.0 if first else EWMA_WEIGHT) * (compute_s - self._avg_batch_s)
        if self._metrics is not None:
            self._metrics.observe_batch(size, waits, compute_s)

    @staticmethod
    def _deliver(batch: list[_Pending], results: list[Completed]) -> None:
        for item, result in zip(batch, results, strict=True):
            if not item.future.done():
                item.future.set_result(result)

    @staticmethod
    def _fail(batch: list[_Pending], error: InferenceFailed) -> None:
        for item in batch:
            if not item.future.done():
                item.future.set_exception(error)

    async def close(self) -> None:
        """Stop taking requests, finish everything already queued, then stop the worker threads."""
        self._closing = True
        with self._cond:
            self._cond.notify_all()
        await asyncio.gather(*(asyncio.to_thread(worker.join) for worker in self._workers))
        await asyncio.sleep(0)  # let the last deliveries, scheduled from the workers, run
