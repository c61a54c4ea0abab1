"""OpenTelemetry tracing: where one request spent its time, from the wire to onnxruntime and back.

Off by default, and then free: no hook is registered. On (``--tracing`` / ``PIXELSERVE_TRACING=true``), the
`TracingHook` gives each request a server span named for its protocol and
task, continuing the W3C trace context of its HTTP headers or gRPC metadata (``traceparent``, ``tracestate``)
and giving it back in the response; its children are ``decode`` (decoding and preprocessing), ``queue`` (the
wait in the batcher), ``compute`` (its batch in onnxruntime) and ``encode`` (the response). Each executed batch
is a span of its own, ``batch``, linked to every request span it served (a batch serves many traces).

The exporters come from the standard variables (`exporters.py`: OTLP over http/protobuf or gRPC by default,
console, none) and the service name from ``OTEL_SERVICE_NAME`` (default "pixelserve").
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode

from ..context import RequestContext
from ..hooks import RequestHook
from .exporters import exporters

if TYPE_CHECKING:
    from ..core.calls import Call

TRACER_NAME = "pixelserve"


class Tracing:
    def __init__(self, processor: SpanProcessor | None = None) -> None:
        """`processor`: where spans go (tests pass an in-memory one); default: the OTEL_* configured exporter."""
        name = os.environ.get("OTEL_SERVICE_NAME", "pixelserve")
        self.provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
        for each in [processor] if processor is not None else [BatchSpanProcessor(e) for e in exporters()]:
            self.provider.add_span_processor(each)
        self.tracer = self.provider.get_tracer(TRACER_NAME)

    def batch(self, start_ns: int, end_ns: int, served: Sequence[SpanContext], size: int) -> SpanContext:
        """One executed batch, linked to the request spans it served; a root span of its own."""
        links = [Link(context) for context in served if context.is_valid]
        span = self.tracer.start_span("batch", context=trace.set_span_in_context(trace.INVALID_SPAN), links=links,
                                      start_time=start_ns, attributes={"pixelserve.batch_size": size})  # fmt: skip
        span.end(end_time=end_ns)
        return span.get_span_context()

    def shutdown(self) -> None:
        self.provider.shutdown()


UNTRACED_PAGES = re.compile(r"^/($|ui(/|$))")  # the playground: not API traffic
MODEL = re.compile(r"/models/[^/:]+")
VERSION = re.compile(r"/versions/[^/:]+")


def route(path: str) -> str:
    """`/v2/models/mnist/versions/3/infer` → `/v2/models/{model}/versions/{version}/infer`."""
    return VERSION.sub("/versions/{version}", MODEL.sub("/models/{model}", path))


def _http_protocol(path: str) -> str:
    return "v2" if path.startswith("/v2/") else "task" if path.startswith("/v1/") else "http"


@dataclass(slots=True)
class _Trace:
    """A request's server span and when the core had its answer (what follows is encoding it)."""

    span: Span
    core_done_ns: int = 0


class TracingHook(RequestHook):
    """Spans as a hook. The edge's request is the server span (probes and scrapes are not traced); each core
    request inside it adds ``decode``, ``queue`` and ``compute`` children from the times its Call recorded
    (``ood.``-prefixed for the paired autoencoder's run), and the time after the core's answer is ``encode``."""

    def __init__(self, tracing: Tracing) -> None:
        self.tracing = tracing
        self.tracer = tracing.tracer
        self._offset_ns = time.time_ns() - time.perf_counter_ns()  # perf_counter seconds -> wall clock ns

    def _wall(self, perf_s: float) -> int:
        return int(perf_s * 1e9) + self._offset_ns

    def opened(self, ctx: RequestContext) -> None:
        if ctx.probe or (ctx.protocol == "rest" and UNTRACED_PAGES.match(ctx.path or "")):
            return
        if ctx.protocol == "rest":
            path = ctx.path or ""
            name = f"{ctx.method} {route(path)}"
            attributes = {"http.request.method": ctx.method or "", "url.path": path, "http.route": route(path),
                          "pixelserve.protocol": _http_protocol(path)}  # fmt: skip
        else:
            service, _, method = ctx.name.partition("/")
            name, attributes = ctx.name, {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}
        parent = propagate.extract(ctx.metadata)
        span = self.tracer.start_span(name, context=parent, kind=SpanKind.SERVER, attributes=attributes)
        ctx.trace = _Trace(span)
        ctx.trace_id = format(span.get_span_context().trace_id, "032x")
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        ctx.headers.extend(carrier.items())

    def answered(self, call: Call, result: Any) -> None:
        if (state := self._children(call)) is not None:
            state.core_done_ns = self._wall(call.answered)

    def failed(self, call: Call, error: BaseException) -> None:
        self._children(call)

    def _children(self, call: Call) -> _Trace | None:
        state = call.context.trace if call.context is not None else None
        if not isinstance(state, _Trace):
            return None
        parent = trace.set_span_in_context(state.span)
        if call.prepared:
            self._span("decode", parent, self._wall(call.preparing), self._wall(call.prepared))
        for run in call.runs:
            model = {"pixelserve.model": run.served.name, "pixelserve.version": run.served.version}
            batch_start = run.done.batch_start_ns or self._wall(run.submitted + run.done.queue_s)
            self._span(f"{run.role}queue", parent, self._wall(run.submitted), batch_start, **model)
            linked = [run.done.batch] if isinstance(run.done.batch, SpanContext) else []
            self._span(f"{run.role}compute", parent, batch_start, run.done.batch_end_ns or batch_start, linked, **model)
        return state

    def _span(self, name: str, parent: Any, start_ns: int, end_ns: int, linked: Sequence[SpanContext] = (),
              **attributes: Any) -> None:  # fmt: skip
        links = [Link(context) for context in linked if context.is_valid]
        span = self.tracer.start_span(name, context=parent, start_time=start_ns, links=links, attributes=attributes)
        span.end(end_time=end_ns)

    def on_batch(self, start_ns: int, end_ns: int, contexts: Sequence[Any], size: int) -> SpanContext:  # type: ignore[override]
        """Each executed batch is a root span linked to the request spans it served."""
        served = [c.trace.span.get_span_context() for c in contexts if c is not None and isinstance(c.trace, _Trace)]
        return self.tracing.batch(start_ns, end_ns, served, size)

    def closed(self, ctx: RequestContext) -> None:
        state = ctx.trace
        if not isinstance(state, _Trace):
            return
        span, end = state.span, time.time_ns()
        if ctx.protocol == "rest":
            status = int(ctx.status or 500)
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
        else:
            span.set_attribute("rpc.grpc.status_code", _grpc_code_value(str(ctx.status)))
        if state.core_done_ns:
            context = trace.set_span_in_context(span)
            self.tracer.start_span("encode", context=context, start_time=state.core_done_ns).end(end_time=end)
        span.end(end_time=end)

    async def stop(self) -> None:
        self.tracing.shutdown()  # flushes the spans still buffered


def _grpc_code_value(name: str) -> int:
    """The numeric code of a gRPC status name (as the edge records it), UNKNOWN for anything else."""
    code = grpc.StatusCode.__members__.get(name, grpc.StatusCode.UNKNOWN)
    return int(code.value[0])
