"""Every Prometheus metric of the service, on a registry passed in (never the global one).

Request metrics are a hook (`RequestMetrics`) on the core's requests; adapters only call `Metrics.render`
for /metrics; the batcher and repository record batching and model-state metrics. Label sets are fixed here
so dashboards do not depend on which adapter served a request.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any, get_args

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

import pixelserve

from ..core.types import ModelState
from ..errors import ClientLeft, ServiceError, mapping_for
from ..hooks import RequestHook
from .process_metrics import register_standard, register_workers

if TYPE_CHECKING:
    from ..core.calls import Call

# 0.25 ms .. 10 s, roughly 1-2.5-5 per decade: tiny models answer in well under a millisecond on CPU.
LATENCY_BUCKETS = (
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS = tuple(float(2**i) for i in range(9))  # 1 .. 256
FETCH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)  # a version from an object store
MODEL_STATES: tuple[str, ...] = get_args(ModelState)
NO_VERSION = ""  # label value when no version was resolved (unknown model, bad request)
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"  # set by the worker supervisor (service.workers)
UNKNOWN_MODEL = "_unknown"  # label value for names the repository never had: clients cannot mint new series


def status_code_name(error: BaseException | None) -> str:
    """The gRPC status name a request ended with, the same for REST and gRPC so both count alike."""
    if error is None:
        return "OK"
    if isinstance(error, ServiceError):
        return mapping_for(error).grpc_code.name
    if isinstance(error, asyncio.CancelledError | ClientLeft) or _starlette_disconnect(error):
        return "CANCELLED"
    return "INTERNAL"


def _starlette_disconnect(error: BaseException) -> bool:
    """starlette's ClientDisconnect, by name: this module serves gRPC too and does not import starlette."""
    kind = type(error)
    return kind.__name__ == "ClientDisconnect" and kind.__module__.startswith("starlette")


class RequestMetrics(RequestHook):
    """Request metrics as a hook: in flight while a request runs, then its latency and the status code of
    what ended it, labelled by the model the client named and the version that answered. In-process calls
    (no protocol: batch scoring, verify) are not counted."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def started(self, call: Call) -> None:
        if call.protocol:
            self._metrics.in_flight_child(call.protocol).inc()

    def answered(self, call: Call, result: Any) -> None:
        if call.protocol:
            self._done(call, call.served.version if call.served is not None else None, "OK")

    def failed(self, call: Call, error: BaseException) -> None:
        if call.protocol:
            self._done(call, None, status_code_name(error))

    def _done(self, call: Call, version: int | None, code: str) -> None:
        metrics = self._metrics
        metrics.in_flight_child(call.protocol).dec()
        key = (call.model, call.task, call.protocol)
        duration, counts = metrics._request_children(key, version)
        duration.observe(call.answered - call.started)
        counter = counts.get(code)
        if counter is None:
            counter = counts[code] = metrics._count_child(key, version, code)
        counter.inc()


class BatchMetrics:
    """The batcher's metrics for one model version, label children looked up once."""

    def __init__(self, metrics: Metrics, model: str, version: int) -> None:
        labels = {"model": model, "version": str(version)}
        self._size = metrics.batch_size.labels(**labels)
        self._compute = metrics.compute_duration.labels(**labels)
        self._queue = metrics.queue_duration.labels(**labels)
        self._depth = metrics.queue_depth.labels(**labels)

    def observe_batch(self, size: int, queue_s: list[float], compute_s: float) -> None:
        """One executed batch: its size, its run time, and each request's wait in the queue."""
        self._size.observe(size)
        self._compute.observe(compute_s)
        for wait in queue_s:
            self._queue.observe(wait)

    def set_queue_depth(self, depth: int) -> None:
        self._depth.set(depth)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        """`registry`: a test's own; by default a new one with the standard process and Python collectors."""
        if registry is None:
            registry = CollectorRegistry()
            register_standard(registry)
        self.registry = registry
        r = self.registry
        model = ["model", "version"]
        request = [*model, "task", "protocol"]
        self.requests = Counter(
            "pixelserve_requests_total",
            "Requests by model, task, protocol and final gRPC-style status code.",
            [*request, "code"],
            registry=r,
        )
        self.request_duration = Histogram(
            "pixelserve_request_duration_seconds",
            "End-to-end request latency inside the server (decode, queue, compute, postprocess).",
            request,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        queue_help = "Time a request waited in the dynamic batcher's queue before its batch ran."
        self.queue_duration = Histogram(
            "pixelserve_queue_duration_seconds", queue_help, model, buckets=LATENCY_BUCKETS, registry=r
        )
        compute_help = "onnxruntime run time of one batch."
        self.compute_duration = Histogram(
            "pixelserve_compute_duration_seconds", compute_help, model, buckets=LATENCY_BUCKETS, registry=r
        )
        batch_help = "Images per executed batch."
        self.batch_size = Histogram("pixelserve_batch_size", batch_help, model, buckets=BATCH_BUCKETS, registry=r)
        # With several workers (prometheus-client's multiprocess mode) gauges combine: work in flight or queued
        # adds up over the workers, a model state is the highest any worker reports.
        in_flight_help = "Requests being handled now."
        self.in_flight = Gauge(
            "pixelserve_in_flight_requests", in_flight_help, ["protocol"], registry=r, multiprocess_mode="livesum"
        )
        depth_help = "Images waiting in the batcher's queue."
        self.queue_depth = Gauge("pixelserve_queue_depth", depth_help, model, registry=r, multiprocess_mode="livesum")
        closed_help = "HTTP connections the server closed: slow headers or body, over the connection limit."
        self.connections_closed = Counter("pixelserve_connections_closed_total", closed_help, ["reason"], registry=r)
        rejected_help = "Model versions refused on load or hot reload: quality_gate (golden set) or invalid."
        self.rejections = Counter("pixelserve_version_rejections_total", rejected_help, ["model", "reason"], registry=r)
        state_help = "1 for the current state of a model version, 0 for the others."
        self.model_state = Gauge(
            "pixelserve_model_state", state_help, [*model, "state"], registry=r, multiprocess_mode="livemax"
        )
        psi_help = (
            "Population stability index of live traffic against the model's test split (model.json drift), over "
            "the rolling window: statistic pixels, predictions, ood_score or reconstruction_error."
        )
        self.drift_psi = Gauge(
            "pixelserve_drift_psi", psi_help, [*model, "statistic"], registry=r, multiprocess_mode="livemax"
        )
        window_help = "Images in the drift window the PSI gauges are computed over."
        self.drift_images = Gauge(
            "pixelserve_drift_window_images", window_help, model, registry=r, multiprocess_mode="livesum"
        )
        # The fleet's drift (deploy/prometheus/alerts.yml): bin counts summed over replicas, against the baseline.
        observed_help = "Observations per drift bin since start (pixels, predicted classes or score buckets)."
        self.drift_observations = Counter("pixelserve_drift_observations_total", observed_help,
                                          [*model, "statistic", "bin"], registry=r)  # fmt: skip
        samples_help = "Images (pixels) or answers (predictions, scores) the drift bins were counted from."
        self.drift_samples = Counter("pixelserve_drift_samples_total", samples_help, [*model, "statistic"], registry=r)
        baseline_help = "The test split's share of each drift bin (model.json drift), what live traffic is compared to."
        self.drift_baseline = Gauge("pixelserve_drift_baseline_share", baseline_help, [*model, "statistic", "bin"],
                                    registry=r, multiprocess_mode="livemax")  # fmt: skip
        dropped_help = "Access log entries dropped because the writer was behind (the request was not held up)."
        self.access_log_dropped = Counter("pixelserve_access_log_dropped_total", dropped_help, registry=r)
        payload_help = "Payload log rows (one per image) by outcome: written (in a committed shard), dropped, failed."
        self.payload_rows = Counter("pixelserve_payload_log_rows_total", payload_help, ["model", "outcome"], registry=r)
        up_help = "1 while the model repository answered its last listing, 0 while it cannot be reached."
        self.repository_up = Gauge("pixelserve_model_repository_up", up_help, registry=r, multiprocess_mode="livemin")
        failures_help = "Model repository listings or downloads that failed (the store was unreachable or refused)."
        self.repository_failures = Counter("pixelserve_model_repository_failures_total", failures_help, registry=r)
        fetch_help = "Time to download and check one model version from an object store into the local cache."
        self.repository_fetch = Histogram("pixelserve_model_repository_fetch_seconds", fetch_help,
                                          buckets=FETCH_BUCKETS, registry=r)  # fmt: skip
        build_help = "1, labelled with the pixelserve and onnxruntime versions and the provider models run on."
        self.build_info = Gauge("pixelserve_build_info", build_help, ["version", "onnxruntime", "provider"],
                                registry=r, multiprocess_mode="livemax")  # fmt: skip
        self._build: tuple[str, str, str] | None = None
        self._known_models: set[str] = set()
        self._children: dict[tuple[tuple[str, str, str], int | None], tuple[Any, dict[str, Any]]] = {}
        self._in_flight_children: dict[str, Any] = {}

    def in_flight_child(self, protocol: str) -> Any:
        gauge = self._in_flight_children.get(protocol)
        if gauge is None:
            gauge = self._in_flight_children[protocol] = self.in_flight.labels(protocol=protocol)
        return gauge

    def _labels(self, key: tuple[str, str, str], version: int | None) -> dict[str, str]:
        model, task, protocol = key
        name = model if model in self._known_models else UNKNOWN_MODEL
        return {"model": name, "version": NO_VERSION if version is None else str(version), "task": task,
                "protocol": protocol}  # fmt: skip

    def _request_children(self, key: tuple[str, str, str], version: int | None) -> tuple[Any, dict[str, Any]]:
        """(latency histogram child, {code: counter child}) for a request's labels, created once."""
        known = key[0] in self._known_models
        cache_key = (key if known else (UNKNOWN_MODEL, key[1], key[2]), version)
        children = self._children.get(cache_key)
        if children is None:
            children = self._children[cache_key] = (self.request_duration.labels(**self._labels(key, version)), {})
        return children

    def _count_child(self, key: tuple[str, str, str], version: int | None, code: str) -> Any:
        return self.requests.labels(**self._labels(key, version), code=code)

    def payload_rows_counted(self, outcome: str, model: str, rows: int) -> None:
        """The payload log's `on_count` (written and failed from its writer thread, dropped on the loop)."""
        self.payload_rows.labels(model=model, outcome=outcome).inc(rows)

    def repository_reached(self, up: bool) -> None:
        self.repository_up.set(1 if up else 0)
        if not up:
            self.repository_failures.inc()

    def version_rejected(self, model: str, reason: str) -> None:
        self.rejections.labels(model=model, reason=reason).inc()

    def connection_closed(self, reason: str) -> None:
        self.connections_closed.labels(reason=reason).inc()

    def batch(self, model: str, version: int) -> BatchMetrics:
        return BatchMetrics(self, model, version)

    def served_on(self, onnxruntime: str, provider: str) -> None:
        """The build info, once a model runs (the provider is only known then); a later model on another
        provider moves it."""
        labels = (pixelserve.__version__, onnxruntime, provider)
        if labels != self._build:
            if self._build is not None:  # 0, not removed: multiprocess mode cannot remove a series
                self.build_info.labels(*self._build).set(0)
            self.build_info.labels(*labels).set(1)
            self._build = labels

    def set_model_state(self, model: str, version: int, state: ModelState) -> None:
        if model not in self._known_models:
            self._known_models.add(model)
            self._children.clear()  # requests for this name were counted as unknown until now
        for candidate in MODEL_STATES:
            self.model_state.labels(model=model, version=str(version), state=candidate).set(
                1 if candidate == state else 0
            )

    def render(self) -> tuple[bytes, str]:
        """The text exposition for /metrics: (body, content type); with several workers, all of them."""
        directory = os.environ.get(MULTIPROCESS_DIR)
        if directory:
            combined = CollectorRegistry()
            multiprocess.MultiProcessCollector(combined, path=directory)
            register_workers(combined, directory)
            return generate_latest(combined), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
