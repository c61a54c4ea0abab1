"""Drift monitoring: rolling windows of live traffic scored against model.json's baseline, read back from the
real server's /metrics after real REST and gRPC traffic."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pixelserve import drift
from pixelserve.measured import DriftBaseline
from pixelserve.service.grpc.gen.pixelserve.v1 import pixelserve_pb2 as pb
from pixelserve.service.grpc.gen.pixelserve.v1 import pixelserve_pb2_grpc as pb_grpc
from pixelserve.service.observe.drift import DriftMonitor, DriftWindow
from pixelserve.service.observe.metrics import Metrics
from pixelserve.service.settings import Settings
from pixelserve.service.wiring import build_core
from tests.service.models import (
    AUTOENCODER,
    CLASSIFIER,
    add_drift_baseline,
    encode_image,
    random_images,
    reference_session,
)
from tests.service.transports import both_transports

BASELINE_IMAGES = random_images(2000, seed=100)  # the "test split" of the tiny models


def foreign_images(count: int, seed: int = 7) -> np.ndarray:
    """Dark scans: intensities in 0..63, where the baseline is uniform over 0..255."""
    return (random_images(count, seed=seed) // 4).astype(np.uint8)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _baseline() -> DriftBaseline:
    return DriftBaseline(samples=100, pixel_histogram=[1 / 16] * 16, predictions=[0.5, 0.5], score="ood_score",
                         score_edges=[float(e) for e in np.linspace(0.1, 0.9, 9)])  # fmt: skip


def test_window_forgets_traffic_older_than_the_window() -> None:
    clock = FakeClock()
    window = DriftWindow(_baseline(), window_s=100.0, clock=clock)
    window.observe(np.zeros((30, 4, 4, 1), dtype=np.uint8))
    clock.now += 50
    window.observe(np.full((20, 4, 4, 1), 255, dtype=np.uint8))
    assert window.images() == 50
    clock.now += 55  # the first slot is now older than the window
    assert window.images() == 20
    clock.now += 100
    assert window.images() == 0 and window.scores(min_samples=1) == {}


def test_each_statistic_waits_for_min_samples_before_it_is_scored() -> None:
    window = DriftWindow(_baseline(), window_s=100.0, clock=FakeClock())
    images = random_images(40)
    window.observe(images, predicted=np.zeros(40, dtype=np.int64))  # no scores sent
    assert window.scores(min_samples=41) == {}
    found = window.scores(min_samples=40)
    assert set(found) == {"pixels", "predictions"}
    assert found["pixels"] < drift.MODERATE
    assert found["predictions"] > drift.SIGNIFICANT  # all class 0 against a 50/50 baseline


@dataclass
class Served:
    http: httpx.AsyncClient
    stub: pb_grpc.PixelServeStub

    async def gauges(self) -> dict[tuple[str, ...], float]:
        text = (await self.http.get("/metrics")).text
        found = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "pixelserve_drift_psi":
                    found[(s.labels["model"], s.labels["statistic"])] = s.value
                elif s.name == "pixelserve_drift_window_images":
                    found[(s.labels["model"], "images")] = s.value
        return found

    async def settled(self, model: str, images: int) -> dict[str, float]:
        """The model's gauges once a refresh has seen all `images` (the monitor refreshes every 50 ms)."""
        for _ in range(200):
            gauges = await self.gauges()
            if gauges.get((model, "images")) == images:
                await asyncio.sleep(0.12)  # one more refresh, so every statistic is of the same window
                gauges = await self.gauges()
                return {statistic: value for (name, statistic), value in gauges.items() if name == model}
            await asyncio.sleep(0.05)
        raise AssertionError(f"drift window of {model} never reached {images} images: {await self.gauges()}")

    async def classify(self, images: np.ndarray, per_request: int = 25) -> None:
        for start in range(0, len(images), per_request):
            files = [("f", (f"{i}.png", encode_image(im))) for i, im in enumerate(images[start : start + per_request])]
            response = await self.http.post(f"/v1/models/{CLASSIFIER}:classify", files=files)
            assert response.status_code == 200, response.text

    async def reconstruct(self, images: np.ndarray, per_request: int = 25) -> None:
        for start in range(0, len(images), per_request):
            request = pb.ReconstructRequest(model=AUTOENCODER)
            for image in images[start : start + per_request]:
                request.inputs.images.add(encoded=encode_image(image))
            await self.stub.Reconstruct(request)


@pytest.fixture
def drift_settings(settings: Settings, model_repository: Path) -> Settings:
    add_drift_baseline(model_repository, AUTOENCODER, BASELINE_IMAGES)
    add_drift_baseline(model_repository, CLASSIFIER, BASELINE_IMAGES)
    return settings.model_copy(update={"drift_refresh_s": 0.05, "drift_min_samples": 100, "max_batch_size": 32})


async def _serve(settings: Settings, metrics: Metrics) -> AsyncIterator[Served]:
    core = await build_core(settings, metrics)
    try:
        async with both_transports(core, settings, metrics) as (http, channel):
            yield Served(http, pb_grpc.PixelServeStub(channel))
    finally:
        await core.close()


@pytest.fixture
async def served(drift_settings: Settings, metrics: Metrics) -> AsyncIterator[Served]:
    async for s in _serve(drift_settings, metrics):
        yield s


async def test_in_distribution_traffic_scores_low_and_foreign_traffic_high_over_rest(served: Served) -> None:
    await served.classify(random_images(300, seed=5))
    calm = await served.settled(CLASSIFIER, 300)
    assert set(calm) == {"images", "pixels", "predictions", "ood_score"}
    for statistic in ("pixels", "predictions", "ood_score"):
        assert calm[statistic] < drift.MODERATE, (statistic, calm)

    await served.classify(foreign_images(600))
    shifted = await served.settled(CLASSIFIER, 900)
    assert shifted["pixels"] > drift.SIGNIFICANT and shifted["ood_score"] > drift.SIGNIFICANT, shifted
    # (the tiny random classifier answers dark images much as it answers the rest: its predictions need not move)


async def test_a_shift_in_predicted_classes_alone_shows_in_the_predictions_gauge(
    served: Served, model_repository: Path
) -> None:
    """Images the classifier calls "one" (6% of the baseline), drawn from the baseline's own distribution: a
    label shift with the same pixels."""
    pool = random_images(6000, seed=9)
    (probabilities,) = reference_session(model_repository, CLASSIFIER).run(None, {"image": pool})
    ones = pool[probabilities.argmax(axis=1) == 1][:150]
    assert len(ones) == 150
    await served.classify(ones)
    shifted = await served.settled(CLASSIFIER, 150)
    assert shifted["predictions"] > drift.SIGNIFICANT and shifted["pixels"] < drift.MODERATE, shifted


async def test_reconstruction_error_drift_over_grpc(served: Served) -> None:
    await served.reconstruct(random_images(200, seed=6))
    calm = await served.settled(AUTOENCODER, 200)
    assert set(calm) == {"images", "pixels", "reconstruction_error"}
    assert calm["reconstruction_error"] < drift.MODERATE and calm["pixels"] < drift.MODERATE, calm

    await served.reconstruct(foreign_images(400, seed=8))
    shifted = await served.settled(AUTOENCODER, 600)
    assert shifted["reconstruction_error"] > drift.SIGNIFICANT and shifted["pixels"] > drift.SIGNIFICANT, shifted


async def test_below_min_samples_only_the_window_size_is_exported(served: Served) -> None:
    await served.classify(random_images(50, seed=5))
    assert await served.settled(CLASSIFIER, 50) == {"images": 50}


async def test_monitoring_off_exports_no_drift_gauges(drift_settings: Settings, metrics: Metrics) -> None:
    async for off in _serve(drift_settings.model_copy(update={"drift_monitoring": False}), metrics):
        await off.classify(random_images(150, seed=5))
        await asyncio.sleep(0.2)
        assert await off.gauges() == {}


async def test_versions_without_a_baseline_keep_no_window(settings: Settings, metrics: Metrics) -> None:
    async for plain in _serve(settings.model_copy(update={"drift_refresh_s": 0.05, "drift_min_samples": 1}), metrics):
        await plain.classify(random_images(30, seed=5))
        await asyncio.sleep(0.2)
        assert await plain.gauges() == {}


def _samples(metrics: Metrics, name: str) -> dict[tuple[str, ...], float]:
    text = metrics.render()[0].decode()
    return {tuple(sorted(s.labels.items())): s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == name}  # fmt: skip


def test_the_fleet_counters_carry_each_window_once_and_give_the_same_psi() -> None:
    """What a refresh exports is what the window observed since the last one, so Prometheus can sum replicas;
    PSI from the exported counts equals the window's own while nothing has expired."""
    metrics, window = Metrics(), DriftWindow(_baseline(), window_s=3600.0, clock=FakeClock())
    monitor = DriftMonitor(metrics, lambda: [("m", 1, window)], refresh_s=60, min_samples=1)
    rng = np.random.default_rng(3)
    for _ in range(2):  # two refreshes: the second must add only what came after the first
        window.observe(random_images(50, seed=int(rng.integers(1000))), predicted=rng.integers(0, 2, 50),
                       scores=rng.random(50))  # fmt: skip
        monitor.refresh()
    observed = _samples(metrics, "pixelserve_drift_observations_total")
    for statistic in ("pixels", "predictions", "ood_score"):
        counts = np.array([v for k, v in sorted(observed.items(), key=lambda kv: int(dict(kv[0])["bin"]))
                           if dict(k)["statistic"] == statistic])  # fmt: skip
        assert counts.sum() == window.totals[statistic].sum() > 0
        assert drift.psi(window.expected()[statistic], counts) == pytest.approx(window.scores(1)[statistic])
    samples = {dict(k)["statistic"]: v for k, v in _samples(metrics, "pixelserve_drift_samples_total").items()}
    assert samples == {"pixels": 100, "predictions": 100, "ood_score": 100}
    baseline = _samples(metrics, "pixelserve_drift_baseline_share")
    assert baseline[(("bin", "1"), ("model", "m"), ("statistic", "predictions"), ("version", "1"))] == 0.5
