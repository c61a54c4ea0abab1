"""OpenTelemetry tracing: where one request spent its time, from the wire to onnxruntime and back.

Off by default, and then free: the adapters and the core hold `None` instead of a `Tracing` and skip every call.
On (``--tracing`` / ``PIXELSERVE_TRACING=true``), each request gets a server span named for its protocol and
task, continuing the W3C trace context of its HTTP headers or gRPC metadata (``traceparent``, ``tracestate``)
and giving it back in the response; its children are ``decode`` (decoding and preprocessing), ``queue`` (the
wait in the batcher), ``compute`` (its batch in onnxruntime) and ``encode`` (the response). Each executed batch
is a span of its own, ``batch``, linked to every request span it served (a batch serves many traces).

The exporter and service name come from the standard variables: ``OTEL_TRACES_EXPORTER=console|otlp`` (otlp
needs the `[otlp]` extra; ``OTEL_EXPORTER_OTLP_ENDPOINT`` and the other ``OTEL_EXPORTER_OTLP_*`` apply) and
``OTEL_SERVICE_NAME`` (default "pixelserve").
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Link, Span, SpanContext, SpanKind

TRACER_NAME = "pixelserve"


def _exporter() -> SpanExporter:
    choice = os.environ.get("OTEL_TRACES_EXPORTER", "console").split(",")[0].strip().lower()
    if choice == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise ValueError("OTEL_TRACES_EXPORTER=otlp needs the exporter: pip install 'pixelserve[otlp]'") from exc
        return OTLPSpanExporter()
    if choice == "console":
        return ConsoleSpanExporter()
    raise ValueError(f"OTEL_TRACES_EXPORTER={choice!r} is not supported here: use console or otlp")


@dataclass(slots=True)
class _RequestState:
    """Shared by every context copied from the request's (the core's tasks see the same object)."""

    core_done_ns: int = 0


_REQUEST: ContextVar[_RequestState | None] = ContextVar("pixelserve_request_trace", default=None)


class Tracing:
    def __init__(self, processor: SpanProcessor | None = None) -> None:
        """`processor`: where spans go (tests pass an in-memory one); default: the OTEL_* configured exporter."""
        name = os.environ.get("OTEL_SERVICE_NAME", "pixelserve")
        self.provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
        self.provider.add_span_processor(processor or BatchSpanProcessor(_exporter()))
        self.tracer = self.provider.get_tracer(TRACER_NAME)

    @contextlib.contextmanager
    def request(self, name: str, carrier: Mapping[str, str], **attributes: Any) -> Iterator[Span]:
        """The server span of one request, current while inside (so the core's children find it). Its last
        child, ``encode``, runs from the core's answer (`core_done`) to the end: building and sending the
        response."""
        parent = propagate.extract(carrier)
        span = self.tracer.start_span(name, context=parent, kind=SpanKind.SERVER, attributes=attributes)
        state = _RequestState()
        token = _REQUEST.set(state)
        try:
            with trace.use_span(span, end_on_exit=False, record_exception=True, set_status_on_exception=True):
                yield span
        finally:
            with contextlib.suppress(ValueError):  # a generator finished in another context
                _REQUEST.reset(token)
            end = time.time_ns()
            if state.core_done_ns:
                context = trace.set_span_in_context(span)
                self.tracer.start_span("encode", context=context, start_time=state.core_done_ns).end(end_time=end)
            span.end(end_time=end)

    @staticmethod
    def core_done() -> None:
        """The core has its answer: what follows in the request is encoding it."""
        state = _REQUEST.get()
        if state is not None:
            state.core_done_ns = time.time_ns()

    @contextlib.contextmanager
    def child(self, name: str) -> Iterator[Span]:
        with self.tracer.start_as_current_span(name) as span:
            yield span

    def span_between(
        self, name: str, start_ns: int, end_ns: int, linked: Sequence[SpanContext] = (), **attributes: Any
    ) -> None:
        """A finished span with times measured elsewhere (the batcher's threads), as a child of the current span."""
        links = [Link(context) for context in linked if context.is_valid]
        span = self.tracer.start_span(name, start_time=start_ns, links=links, attributes=attributes)
        span.end(end_time=end_ns)

    def batch(self, start_ns: int, end_ns: int, served: Sequence[SpanContext], size: int) -> SpanContext:
        """One executed batch, linked to the request spans it served; a root span of its own."""
        links = [Link(context) for context in served if context.is_valid]
        span = self.tracer.start_span("batch", context=trace.set_span_in_context(trace.INVALID_SPAN), links=links,
                                      start_time=start_ns, attributes={"pixelserve.batch_size": size})  # fmt: skip
        span.end(end_time=end_ns)
        return span.get_span_context()

    @staticmethod
    def current() -> SpanContext:
        return trace.get_current_span().get_span_context()

    @staticmethod
    def trace_id() -> str:
        """The current trace's id as W3C writes it (32 hex digits), "" outside a request."""
        context = trace.get_current_span().get_span_context()
        return format(context.trace_id, "032x") if context.is_valid else ""

    @staticmethod
    def response_headers() -> dict[str, str]:
        """The current span's context for a response (traceparent, tracestate), as the request carried it."""
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        return carrier

    def shutdown(self) -> None:
        self.provider.shutdown()
