"""Live drift: is today's traffic still like the test split the model was measured on?

Each served version whose model.json carries a drift baseline keeps a rolling window (``drift_window_s``, in
ten slots that expire in turn) of the statistics pixelserve.drift defines: the input's pixel histogram, the
predicted classes, the served score. Every ``drift_refresh_s`` the monitor scores each window against its
baseline as a population stability index and sets

- ``pixelserve_drift_psi{model,version,statistic}`` (statistic: pixels, predictions, ood_score or
  reconstruction_error), once the window holds ``drift_min_samples`` images;
- ``pixelserve_drift_window_images{model,version}``, the images the scores are of.

Observing costs one bincount per request on the event loop (a few microseconds for a small image). Each refresh
also adds what the window saw since the last one to the fleet counters (``pixelserve_drift_observations_total``,
``pixelserve_drift_samples_total``, with ``pixelserve_drift_baseline_share``), which Prometheus sums over replicas
(deploy/prometheus/alerts.yml). ``--drift-monitoring false`` turns it all off. With several workers each scores
its own share of the traffic and the gauges report the highest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from pixelserve import drift
from pixelserve.measured import DriftBaseline

from ..hooks import RequestHook
from .metrics import Metrics

if TYPE_CHECKING:
    from ..core.calls import Call

log = logging.getLogger(__name__)

SLOTS = 10
PIXELS, PREDICTIONS = "pixels", "predictions"


class _Slot:
    __slots__ = ("classes", "images", "pixels", "scores", "start")

    def __init__(self, start: float, classes: int, buckets: int) -> None:
        self.start = start
        self.images = 0
        self.pixels = np.zeros(drift.PIXEL_BINS, dtype=np.int64)
        self.classes = np.zeros(classes, dtype=np.int64)
        self.scores = np.zeros(buckets, dtype=np.int64)


class DriftWindow:
    """The last `window_s` of one served version's traffic, in the bins of its baseline."""

    def __init__(self, baseline: DriftBaseline, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.baseline = baseline
        self.window_s = window_s
        self._slot_s = window_s / SLOTS
        self._clock = clock
        self._classes = len(baseline.predictions or ())
        self._edges = np.asarray(baseline.score_edges or (), dtype=np.float64)
        self._score_shares = drift.score_shares(baseline.score_edges) if baseline.score_edges else []
        self._slots: deque[_Slot] = deque(maxlen=SLOTS + 1)
        # Everything observed since the version started serving, for the fleet-wide counters (the monitor
        # exports what was added since its last refresh; Prometheus sums the replicas).
        self.totals: dict[str, np.ndarray] = {name: np.zeros(len(shares), np.int64)
                                              for name, shares in self.expected().items()}  # fmt: skip
        self.samples: dict[str, int] = dict.fromkeys(self.totals, 0)

    def expected(self) -> dict[str, list[float]]:
        """The baseline's share of each bin, per statistic this version has."""
        found = {PIXELS: list(self.baseline.pixel_histogram)}
        if self.baseline.predictions:
            found[PREDICTIONS] = list(self.baseline.predictions)
        if self.baseline.score and self._score_shares:
            found[self.baseline.score] = list(self._score_shares)
        return found

    def _slot(self) -> _Slot:
        now = self._clock()
        if not self._slots or now - self._slots[-1].start >= self._slot_s:
            self._slots.append(_Slot(now, self._classes, len(self._edges) + 1 if len(self._edges) else 0))
        return self._slots[-1]

    def observe(self, batch: np.ndarray, predicted: np.ndarray | None = None, scores: np.ndarray | None = None) -> None:
        """One request: its model input (uint8 NHWC), predicted class indices, served scores."""
        slot = self._slot()
        if batch.dtype == np.uint8:
            counts = drift.pixel_counts(batch)
            slot.pixels += counts
            slot.images += len(batch)
            self._total(PIXELS, counts, len(batch))
        if predicted is not None and self._classes:
            counts = drift.class_counts(predicted, self._classes)
            slot.classes += counts
            self._total(PREDICTIONS, counts, len(predicted))
        if scores is not None and len(self._edges):
            counts = drift.score_counts(scores, self._edges)
            slot.scores += counts
            self._total(str(self.baseline.score), counts, len(scores))

    def _total(self, statistic: str, counts: np.ndarray, samples: int) -> None:
        if statistic in self.totals:
            self.totals[statistic] += counts
            self.samples[statistic] += samples

    def _live(self) -> list[_Slot]:
        oldest = self._clock() - self.window_s
        return [slot for slot in self._slots if slot.start > oldest]

    def images(self) -> int:
        return sum(slot.images for slot in self._live())

    def scores(self, min_samples: int) -> dict[str, float]:
        """PSI per statistic over the window, for each statistic with at least `min_samples` observations."""
        live = self._live()
        found: dict[str, float] = {}
        statistics = (
            (PIXELS, self.baseline.pixel_histogram, sum(s.images for s in live), [s.pixels for s in live]),
            (PREDICTIONS, self.baseline.predictions, None, [s.classes for s in live]),
            (self.baseline.score, self._score_shares, None, [s.scores for s in live]),
        )
        for name, expected, samples, counts in statistics:
            if not name or not expected or not counts:
                continue
            total = np.sum(counts, axis=0)
            if (samples if samples is not None else int(total.sum())) >= min_samples and total.sum() > 0:
                found[name] = drift.psi(expected, total)
        return found


class DriftMonitor:
    """Scores every served version's window into the drift gauges, every `refresh_s`."""

    def __init__(self, metrics: Metrics, windows: Callable[[], list[tuple[str, int, DriftWindow]]],
                 *, refresh_s: float, min_samples: int) -> None:  # fmt: skip
        self._metrics = metrics
        self._windows = windows
        self.refresh_s = refresh_s
        self.min_samples = min_samples
        self._shown: set[tuple[str, ...]] = set()
        self._exported: dict[tuple[str, str], tuple[DriftWindow, dict[str, np.ndarray], dict[str, int]]] = {}
        self._task: asyncio.Task[None] | None = None

    def _export(self, labels: tuple[str, str], window: DriftWindow) -> None:
        """The fleet view: what the window observed since the last refresh goes into counters Prometheus sums
        over replicas (deploy/prometheus/alerts.yml computes PSI from the sums); the baseline beside them."""
        seen = self._exported.get(labels)
        if seen is None or seen[0] is not window:  # a version starting to serve (again): its window is new
            for statistic, shares in window.expected().items():
                for index, share in enumerate(shares):
                    self._metrics.drift_baseline.labels(*labels, statistic, str(index)).set(share)
            zeros = {statistic: np.zeros_like(total) for statistic, total in window.totals.items()}
            seen = self._exported[labels] = (window, zeros, dict.fromkeys(window.totals, 0))
        _, counts, samples = seen
        for statistic, total in window.totals.items():
            for index in np.flatnonzero(total - counts[statistic]):
                added = int(total[index] - counts[statistic][index])
                self._metrics.drift_observations.labels(*labels, statistic, str(index)).inc(added)
            counts[statistic] = total.copy()
            if (added := window.samples[statistic] - samples[statistic]) > 0:
                self._metrics.drift_samples.labels(*labels, statistic).inc(added)
                samples[statistic] = window.samples[statistic]

    def refresh(self) -> None:
        shown: set[tuple[str, ...]] = set()
        for name, version, window in self._windows():
            labels = (name, str(version))
            self._export(labels, window)
            self._metrics.drift_images.labels(*labels).set(window.images())
            shown.add(labels)
            for statistic, value in window.scores(self.min_samples).items():
                self._metrics.drift_psi.labels(*labels, statistic).set(value)
                shown.add((*labels, statistic))
        for gone in self._shown - shown:  # a retired version, or a window that ran dry
            gauge = self._metrics.drift_psi if len(gone) == 3 else self._metrics.drift_images
            with contextlib.suppress(KeyError):
                gauge.remove(*gone)
        self._shown = shown

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                self.refresh()
            except Exception:  # never let a statistics bug stop serving; say so once per refresh
                log.exception("drift refresh failed")

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class DriftHook(RequestHook):
    """Drift as a hook: each answered request's model input and what the task measured go into its served
    version's window; the monitor scores the windows while the core runs."""

    def __init__(self, metrics: Metrics, *, refresh_s: float, min_samples: int) -> None:
        self._metrics = metrics
        self._refresh_s, self._min_samples = refresh_s, min_samples
        self.monitor: DriftMonitor | None = None

    def answered(self, call: Call, result: Any) -> None:
        window = call.served.drift if call.served is not None else None
        if window is not None and call.batch is not None:
            window.observe(call.batch, call.predicted, call.scores)

    async def start(self, core: Any) -> None:
        def windows() -> list[tuple[str, int, DriftWindow]]:
            return [(s.name, s.version, s.drift) for s in core.repository.served() if s.drift is not None]

        self.monitor = DriftMonitor(self._metrics, windows, refresh_s=self._refresh_s, min_samples=self._min_samples)
        self.monitor.start()

    async def stop(self) -> None:
        if self.monitor is not None:
            await self.monitor.stop()
