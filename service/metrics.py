"""Every Prometheus metric of the service, on a registry passed in (never the global one).

Adapters only call `Metrics.track` around a request and `Metrics.render` for /metrics; the core records
batching and model-state metrics. Label sets are fixed here so dashboards do not depend on which adapter
served a request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from time import perf_counter
from typing import get_args

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from pixelserve.service.errors import ServiceError, mapping_for
from pixelserve.service.types import ModelState

# 0.25 ms .. 10 s, roughly 1-2.5-5 per decade: tiny models answer in well under a millisecond on CPU.
LATENCY_BUCKETS = (
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS = tuple(float(2**i) for i in range(9))  # 1 .. 256
MODEL_STATES: tuple[str, ...] = get_args(ModelState)
NO_VERSION = ""  # label value when no version was resolved (unknown model, bad request)
UNKNOWN_MODEL = "_unknown"  # label value for names the repository never had: clients cannot mint new series


def status_code_name(error: BaseException | None) -> str:
    """The gRPC status name a request ended with, the same for REST and gRPC so both count alike."""
    if error is None:
        return "OK"
    if isinstance(error, ServiceError):
        return mapping_for(error).grpc_code.name
    if isinstance(error, asyncio.CancelledError):
        return "CANCELLED"
    return "INTERNAL"


@dataclass
class RequestTracker:
    """Handed out by `Metrics.track`; the adapter sets `version` once the core says which version served."""

    version: int | None = None


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
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
        self.in_flight = Gauge("pixelserve_in_flight_requests", "Requests being handled now.", ["protocol"], registry=r)
        depth_help = "Images waiting in the batcher's queue."
        self.queue_depth = Gauge("pixelserve_queue_depth", depth_help, model, registry=r)
        state_help = "1 for the current state of a model version, 0 for the others."
        self.model_state = Gauge("pixelserve_model_state", state_help, [*model, "state"], registry=r)
        self._known_models: set[str] = set()

    @contextmanager
    def track(self, *, model: str, task: str, protocol: str) -> Iterator[RequestTracker]:
        """Count one request: in-flight while inside, then latency and a status code from the raised error."""
        tracker = RequestTracker()
        gauge = self.in_flight.labels(protocol=protocol)
        gauge.inc()
        start = perf_counter()
        error: BaseException | None = None
        try:
            yield tracker
        except BaseException as exc:
            error = exc
            raise
        finally:
            gauge.dec()
            version = NO_VERSION if tracker.version is None else str(tracker.version)
            name = model if model in self._known_models else UNKNOWN_MODEL
            labels = {"model": name, "version": version, "task": task, "protocol": protocol}
            self.request_duration.labels(**labels).observe(perf_counter() - start)
            self.requests.labels(**labels, code=status_code_name(error)).inc()

    def observe_batch(self, model: str, version: int, *, size: int, queue_s: list[float], compute_s: float) -> None:
        """One executed batch: its size, its run time, and each request's wait in the queue."""
        labels = {"model": model, "version": str(version)}
        self.batch_size.labels(**labels).observe(size)
        self.compute_duration.labels(**labels).observe(compute_s)
        queue = self.queue_duration.labels(**labels)
        for wait in queue_s:
            queue.observe(wait)

    def set_queue_depth(self, model: str, version: int, depth: int) -> None:
        self.queue_depth.labels(model=model, version=str(version)).set(depth)

    def set_model_state(self, model: str, version: int, state: ModelState) -> None:
        self._known_models.add(model)
        for candidate in MODEL_STATES:
            self.model_state.labels(model=model, version=str(version), state=candidate).set(
                1 if candidate == state else 0
            )

    def render(self) -> tuple[bytes, str]:
        """The text exposition for /metrics: (body, content type)."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
