"""Where spans go, as the OpenTelemetry environment spec says: OTLP by default, over http/protobuf or gRPC to
receivers these tests run (real OTLP services built from the opentelemetry-proto messages), ``none``,
comma lists, and OTEL_SDK_DISABLED. Bad values stop start-up with what to set."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as otlp_grpc
from opentelemetry.sdk.trace.export import ConsoleSpanExporter

from pixelserve.service.observe import exporters
from tests.service.models import CLASSIFIER, encode_image, random_images
from tests.service.rest_support import server_process

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "100"}  # the batch processor's export interval, ms (default 5 s)


def test_the_default_exporter_is_otlp_over_http_protobuf() -> None:
    assert exporters.exporter_names({}) == ["otlp"]
    assert exporters.otlp_protocol({}) == "http/protobuf"
    (built,) = exporters.exporters({})
    assert isinstance(built, HttpExporter)


def test_a_comma_list_builds_each_exporter_once_and_none_adds_nothing() -> None:
    env = {"OTEL_TRACES_EXPORTER": " console , OTLP,none,console", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    assert exporters.exporter_names(env) == ["console", "otlp"]
    console, otlp_grpc_exporter = exporters.exporters(env)
    assert isinstance(console, ConsoleSpanExporter) and isinstance(otlp_grpc_exporter, GrpcExporter)
    assert exporters.exporters({"OTEL_TRACES_EXPORTER": "none"}) == []


def test_the_traces_protocol_variable_wins_over_the_general_one() -> None:
    env = {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}
    assert exporters.otlp_protocol(env) == "http/protobuf"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER='zipkin' is not supported"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTLP protocol 'http/json' is not supported"),
    ],
)
def test_an_unsupported_value_is_refused_with_what_to_use(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        exporters.exporters(env)


@pytest.mark.parametrize(("value", "disabled"), [("true", True), ("TRUE", True), ("false", False), ("1", False),
                                                 ("", False)])  # fmt: skip
def test_only_true_disables_the_sdk(value: str, disabled: bool) -> None:
    assert exporters.sdk_disabled({"OTEL_SDK_DISABLED": value}) is disabled


@dataclass
class Received:
    """What a receiver was sent: every span as (service name, span name, trace id hex)."""

    spans: list[tuple[str, str, str]] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def add(self, request: otlp.ExportTraceServiceRequest) -> None:
        with self.arrived:
            for resource_spans in request.resource_spans:
                service = next(a.value.string_value for a in resource_spans.resource.attributes
                               if a.key == "service.name")  # fmt: skip
                for scope in resource_spans.scope_spans:
                    self.spans += [(service, s.name, s.trace_id.hex()) for s in scope.spans]
            self.arrived.notify_all()

    def wait_for(self, trace_id: str, name: str, timeout_s: float = 20.0) -> list[tuple[str, str, str]]:
        with self.arrived:
            self.arrived.wait_for(lambda: any(s[1:] == (name, trace_id) for s in self.spans), timeout=timeout_s)
            return [s for s in self.spans if s[2] == trace_id]


class _TraceService(otlp_grpc.TraceServiceServicer):
    def __init__(self, received: Received) -> None:
        self.received = received

    def Export(self, request: otlp.ExportTraceServiceRequest, context: grpc.ServicerContext):
        self.received.add(request)
        return otlp.ExportTraceServiceResponse()


@pytest.fixture
def grpc_receiver() -> Iterator[tuple[str, Received]]:
    """An OTLP/gRPC collector endpoint on loopback."""
    received = Received()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    otlp_grpc.add_TraceServiceServicer_to_server(_TraceService(received), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"http://127.0.0.1:{port}", received
    finally:
        server.stop(grace=None)


@pytest.fixture
def http_receiver() -> Iterator[tuple[str, Received]]:
    """An OTLP/HTTP collector endpoint (POST /v1/traces, binary protobuf) on loopback."""
    received = Received()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            ok = self.path == "/v1/traces" and self.headers["content-type"] == "application/x-protobuf"
            if ok:
                received.add(otlp.ExportTraceServiceRequest.FromString(body))
            self.send_response(200 if ok else 404)
            self.send_header("content-type", "application/x-protobuf")
            answer = otlp.ExportTraceServiceResponse().SerializeToString()
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def _classify(url: str) -> httpx.Response:
    png = encode_image(random_images(1)[0])
    response = httpx.post(f"{url}/v1/models/{CLASSIFIER}:classify", content=png,
                          headers={"content-type": "image/png", "traceparent": TRACEPARENT})  # fmt: skip
    assert response.status_code == 200
    return response


def test_otlp_over_grpc_reaches_a_collector(model_repository: Path, tmp_path: Path, grpc_receiver) -> None:
    endpoint, received = grpc_receiver
    env = {**FAST_EXPORT, "OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
           "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_SERVICE_NAME": "pixelserve-grpc-otlp"}  # fmt: skip
    with server_process(model_repository, tmp_path / "server.log", "--tracing", "true", env=env) as server:
        _classify(server.url)
        spans = received.wait_for(TRACE_ID, "POST /v1/models/{model}:classify")
        assert "spans to otlp (grpc)" in server.log()
    names = {name for _, name, _ in spans}
    assert {"POST /v1/models/{model}:classify", "decode", "queue", "compute", "encode"} <= names
    assert {service for service, _, _ in spans} == {"pixelserve-grpc-otlp"}


def test_by_default_spans_go_to_a_collector_over_otlp_http(model_repository: Path, tmp_path: Path,
                                                          http_receiver) -> None:  # fmt: skip
    endpoint, received = http_receiver
    env = {**FAST_EXPORT, "OTEL_TRACES_EXPORTER": "", "OTEL_EXPORTER_OTLP_PROTOCOL": "",
           "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}  # fmt: skip
    with server_process(model_repository, tmp_path / "server.log", "--tracing", "true", env=env) as server:
        _classify(server.url)
        spans = received.wait_for(TRACE_ID, "POST /v1/models/{model}:classify")
    assert ("pixelserve", "POST /v1/models/{model}:classify", TRACE_ID) in spans


def test_exporter_none_starts_and_still_propagates_the_trace_context(model_repository: Path,
                                                                     tmp_path: Path) -> None:  # fmt: skip
    env = {"OTEL_TRACES_EXPORTER": "none"}
    with server_process(model_repository, tmp_path / "server.log", "--tracing", "true", env=env) as server:
        response = _classify(server.url)
        assert response.headers["traceparent"].split("-")[1] == TRACE_ID
        assert "no exporter (OTEL_TRACES_EXPORTER=none)" in server.log()


def test_sdk_disabled_turns_tracing_off_even_with_the_flag(model_repository: Path, tmp_path: Path) -> None:
    env = {"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"}
    with server_process(model_repository, tmp_path / "server.log", "--tracing", "true", env=env) as server:
        response = _classify(server.url)
        assert "traceparent" not in response.headers
        assert "OTEL_SDK_DISABLED=true" in server.log()
