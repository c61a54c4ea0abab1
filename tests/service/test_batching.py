"""The dynamic batcher over a real onnxruntime session of the tiny classifier.

Failure and slowness are injected at the dependency boundary (the run function the batcher calls), wrapping
the real session: a gate that holds a batch, a sleep, an error on a marked input.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from pixelserve.service.core.batching import DynamicBatcher
from pixelserve.service.core.runtime import Feeds, ModelRunner
from pixelserve.service.errors import DeadlineExceeded, InferenceFailed, ModelNotReady, Overloaded, PayloadTooLarge
from pixelserve.service.observe.metrics import Metrics
from tests.service.models import CLASSIFIER, random_images, reference_session

POISON = 255  # an all-255 image makes the injected runner fail its whole batch


class Runner:
    """The real session, plus the knobs tests need: record batches, hold them at a gate, sleep, fail."""

    def __init__(self, repo: Path, *, sleep_s: float = 0.0) -> None:
        self.session = reference_session(repo, CLASSIFIER)
        self.real = ModelRunner(self.session)
        self.sleep_s = sleep_s
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()
        self.batches: list[np.ndarray] = []

    def __call__(self, feeds: Feeds) -> Feeds:
        self.started.set()
        assert self.gate.wait(10), "test gate never opened"
        time.sleep(self.sleep_s)
        images = feeds["image"]
        self.batches.append(images)
        if (images.reshape(len(images), -1) == POISON).all(axis=1).any():
            raise RuntimeError("poisoned input reached the runtime")
        return self.real(feeds)

    def expected(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"image": images})[0]


def make_batcher(runner: Runner, metrics: Metrics, **overrides: float | str) -> DynamicBatcher:
    options = {"max_batch_size": 8, "max_queue_delay_s": 0.05, "max_queue_size": 64, "timeout_s": 10.0}
    options.update(overrides)
    return DynamicBatcher(runner, model="m", version=1, metrics=metrics.batch("m", 1), **options)  # type: ignore[arg-type]


def sample(metrics: Metrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name, {"model": "m", "version": "1"})
    return 0.0 if value is None else value


@pytest.fixture
def runner(repository_template: Path) -> Runner:
    return Runner(repository_template)


async def test_concurrent_requests_form_batches_larger_than_one(runner: Runner, metrics: Metrics) -> None:
    batcher = make_batcher(runner, metrics)
    requests = [random_images(1, seed=i) for i in range(8)]
    results = await asyncio.gather(*(batcher.submit({"image": x}) for x in requests))
    await batcher.close()
    for x, result in zip(requests, results, strict=True):
        np.testing.assert_allclose(result.outputs["probabilities"], runner.expected(x), rtol=1e-5, atol=1e-6)
    batches = sample(metrics, "pixelserve_batch_size_count")
    assert sample(metrics, "pixelserve_batch_size_sum") == 8
    assert 1 <= batches < 8, "eight concurrent single-image requests must not run as eight batches"
    assert sample(metrics, "pixelserve_queue_duration_seconds_count") == 8
    assert sample(metrics, "pixelserve_compute_duration_seconds_count") == batches
    assert batcher.stats.inference_count == 8 and batcher.stats.execution_count == batches


async def test_each_request_gets_its_own_rows_back(runner: Runner, metrics: Metrics) -> None:
    batcher = make_batcher(runner, metrics)
    requests = [random_images(n, seed=10 + n) for n in (1, 3, 2, 1)]
    results = await asyncio.gather(*(batcher.submit({"image": x}) for x in requests))
    await batcher.close()
    assert len(runner.batches) == 1 and len(runner.batches[0]) == 7
    for x, result in zip(requests, results, strict=True):
        assert result.outputs["probabilities"].shape == (len(x), 3)
        np.testing.assert_allclose(result.outputs["probabilities"], runner.expected(x), rtol=1e-5, atol=1e-6)


async def test_a_request_larger_than_max_batch_is_chunked_and_joined_in_order(runner: Runner, metrics: Metrics) -> None:
    batcher = make_batcher(runner, metrics)
    x = random_images(20, seed=5)
    result = await batcher.submit({"image": x})
    await batcher.close()
    np.testing.assert_allclose(result.outputs["probabilities"], runner.expected(x), rtol=1e-5, atol=1e-6)
    assert sorted(len(b) for b in runner.batches) == [4, 8, 8]


async def test_full_queue_is_rejected_as_overloaded_with_retry_after(runner: Runner, metrics: Metrics) -> None:
    batcher = make_batcher(runner, metrics, max_queue_size=4, max_queue_delay_s=0.0)
    runner.gate.clear()
    running = asyncio.ensure_future(batcher.submit({"image": random_images(1)}))
    await asyncio.to_thread(runner.started.wait, 5)  # the first batch is in the runtime, held at the gate
    queued = [asyncio.ensure_future(batcher.submit({"image": random_images(2, seed=i)})) for i in range(2)]
    await asyncio.sleep(0)
    assert batcher.queued_images == 4
    assert sample(metrics, "pixelserve_queue_depth") == 4
    with pytest.raises(Overloaded, match="4 images queued") as info:
        await batcher.submit({"image": random_images(1)})
    assert info.value.retry_after is not None and info.value.retry_after > 0
    with pytest.raises(PayloadTooLarge, match="queues at most 4"):
        await batcher.submit({"image": random_images(5)})
    runner.gate.set()
    await asyncio.gather(running, *queued)
    await batcher.close()
    assert sample(metrics, "pixelserve_queue_depth") == 0


async def test_deadline_exceeded_drops_the_request_before_it_runs(runner: Runner, metrics: Metrics) -> None:
    batcher = make_batcher(runner, metrics, timeout_s=0.3, max_queue_delay_s=0.0)
    runner.gate.clear()
    first = asyncio.ensure_future(batcher.submit({"image": random_images(1)}))
    await asyncio.to_thread(runner.started.wait, 5)
    marked = np.full((1, 8, 8, 1), 7, dtype=np.uint8)
    started = time.perf_counter()
    with pytest.raises(DeadlineExceeded, match=r"0\.3 s"):
        await batcher.submit({"image": marked})
    assert 0.25 < time.perf_counter() - started < 5
    assert batcher.queued_images == 0
    with pytest.raises(DeadlineExceeded):
        await first  # held at the gate past its own deadline too
    runner.gate.set()
    await batcher.close()
    assert not any((b == 7).all(axis=(1, 2, 3)).any() for b in runner.batches), "a dropped request ran"


async def test_failing_batch_fails_all_its_waiters_and_the_next_request_succeeds(
    runner: Runner, metrics: Metrics
) -> None:
    batcher = make_batcher(runner, metrics)
    poisoned = np.full((1, 8, 8, 1), POISON, dtype=np.uint8)
    results = await asyncio.gather(
        batcher.submit({"image": poisoned}),
        batcher.submit({"image": random_images(1, seed=1)}),
        batcher.submit({"image": random_images(2, seed=2)}),
        return_exceptions=True,
    )
    assert len(runner.batches) == 1
    for result in results:
        assert isinstance(result, InferenceFailed)
        assert "batch of 4 images: poisoned input reached the runtime" in result.message
    x = random_images(3, seed=3)
    after = await batcher.submit({"image": x})
    np.testing.assert_allclose(after.outputs["probabilities"], runner.expected(x), rtol=1e-5, atol=1e-6)
    await batcher.close()


async def test_event_loop_keeps_running_while_a_batch_computes(repository_template: Path, metrics: Metrics) -> None:
    runner = Runner(repository_template, sleep_s=0.3)
    batcher = make_batcher(runner, metrics, max_queue_delay_s=0.0)
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    beat = asyncio.ensure_future(heartbeat())
    await batcher.submit({"image": random_images(1)})
    beat.cancel()
    await batcher.close()
    assert ticks >= 10, f"the event loop ticked only {ticks} times during a 0.3 s batch"


async def test_close_finishes_queued_work_then_refuses_new_requests(runner: Runner, metrics: Metrics) -> None:
    batcher = make_batcher(runner, metrics, max_queue_delay_s=0.0, max_batch_size=2)
    runner.gate.clear()
    requests = [random_images(2, seed=i) for i in range(3)]
    pending = [asyncio.ensure_future(batcher.submit({"image": x})) for x in requests]
    await asyncio.to_thread(runner.started.wait, 5)
    closing = asyncio.ensure_future(batcher.close())
    await asyncio.sleep(0.05)
    with pytest.raises(ModelNotReady, match="being unloaded"):
        await batcher.submit({"image": random_images(1)})
    runner.gate.set()
    results = await asyncio.gather(*pending)
    await closing
    for x, result in zip(requests, results, strict=True):
        np.testing.assert_allclose(result.outputs["probabilities"], runner.expected(x), rtol=1e-5, atol=1e-6)


async def test_a_lone_request_pays_no_batching_delay_under_the_adaptive_policy(
    runner: Runner, metrics: Metrics
) -> None:
    batcher = make_batcher(runner, metrics, max_queue_delay_s=5.0)
    started = time.perf_counter()
    result = await batcher.submit({"image": random_images(1)})
    elapsed = time.perf_counter() - started
    await batcher.close()
    assert elapsed < 2.5, f"a lone request waited {elapsed:.2f} s for a batch that no other request would join"
    assert result.queue_s < 2.5


async def test_lone_requests_stop_waiting_soon_after_a_burst_of_large_batches(runner: Runner, metrics: Metrics) -> None:
    """After load that formed full batches, the expected batch size decays towards 1 without ever reaching it: lone
    requests must then run at once, not each wait the whole delay for a second request that never comes."""
    batcher = make_batcher(runner, metrics, max_queue_delay_s=0.2)
    for round_ in range(5):  # bursts of 8 concurrent requests: batches of 8
        await asyncio.gather(*(batcher.submit({"image": random_images(1, seed=round_ * 8 + i)}) for i in range(8)))
    waits = [(await batcher.submit({"image": random_images(1, seed=100 + i)})).queue_s for i in range(40)]
    await batcher.close()
    assert max(runner.batches[i].shape[0] for i in range(5)) == 8, "the bursts formed full batches"
    assert max(waits[-20:]) < 0.05, f"lone requests still wait for a batch: {[round(w, 3) for w in waits[-20:]]}"


async def test_the_fill_policy_waits_for_a_full_batch_up_to_the_delay(runner: Runner, metrics: Metrics) -> None:
    batcher = make_batcher(runner, metrics, max_queue_delay_s=0.3, policy="fill")
    result = await batcher.submit({"image": random_images(1)})
    await batcher.close()
    assert result.queue_s >= 0.29


async def test_requests_arriving_while_a_batch_runs_form_the_next_batch(runner: Runner, metrics: Metrics) -> None:
    batcher = make_batcher(runner, metrics, max_queue_delay_s=0.0)
    runner.gate.clear()
    first = asyncio.ensure_future(batcher.submit({"image": random_images(1, seed=0)}))
    await asyncio.to_thread(runner.started.wait, 5)  # the first batch is in the runtime, held at the gate
    later = [asyncio.ensure_future(batcher.submit({"image": random_images(1, seed=i)})) for i in (1, 2, 3)]
    await asyncio.sleep(0.05)
    runner.gate.set()
    await asyncio.gather(first, *later)
    await batcher.close()
    assert [len(b) for b in runner.batches] == [1, 3]


async def test_each_session_instance_runs_its_own_batch_at_the_same_time(repository_template: Path) -> None:
    runners = [Runner(repository_template), Runner(repository_template)]
    for r in runners:
        r.gate.clear()
    batcher = DynamicBatcher(runners, model="m", version=1, max_batch_size=8, max_queue_delay_s=0.0,
                             max_queue_size=64, timeout_s=10.0)  # fmt: skip
    first = asyncio.ensure_future(batcher.submit({"image": random_images(1, seed=0)}))
    await asyncio.sleep(0.05)
    second = asyncio.ensure_future(batcher.submit({"image": random_images(2, seed=1)}))
    started = await asyncio.to_thread(lambda: all(r.started.wait(5) for r in runners))
    assert started and batcher.instances == 2, "both instances hold a batch at once"
    for r in runners:
        r.gate.set()
    results = await asyncio.gather(first, second)
    await batcher.close()
    assert [len(r.outputs["probabilities"]) for r in results] == [1, 2]
