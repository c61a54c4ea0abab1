"""Tracing: the documented span tree for a request over each protocol, the W3C context continued from the
caller and given back, batch spans linked to the requests they served, and nothing at all when it is off.

The in-process tests export to the SDK's in-memory exporter; the process test runs `pixelserve serve
--tracing` with the console exporter and reads the spans it prints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from pixelserve.service.core.core import InferenceCore
from pixelserve.service.grpc.gen.inference import grpc_service_pb2 as v2_pb
from pixelserve.service.grpc.gen.inference import grpc_service_pb2_grpc as v2_grpc
from pixelserve.service.grpc.gen.pixelserve.v1 import pixelserve_pb2 as pb
from pixelserve.service.grpc.gen.pixelserve.v1 import pixelserve_pb2_grpc as pb_grpc
from pixelserve.service.observe.metrics import Metrics
from pixelserve.service.observe.tracing import Tracing
from pixelserve.service.settings import Settings
from pixelserve.service.wiring import operations
from tests.service.models import CLASSIFIER, DENOISER, encode_image, random_images
from tests.service.rest_support import ROOT, server_process
from tests.service.transports import both_transports

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
REQUEST_CHILDREN = ["decode", "queue", "compute", "encode"]


@dataclass
class Traced:
    http: httpx.AsyncClient
    channel: grpc.aio.Channel
    exporter: InMemorySpanExporter

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())


@pytest.fixture
async def traced(settings: Settings, metrics: Metrics) -> AsyncIterator[Traced]:
    exporter = InMemorySpanExporter()
    tracing = Tracing(SimpleSpanProcessor(exporter))
    core = InferenceCore(settings, metrics, operations(settings, metrics, tracing=tracing))
    await core.start()
    try:
        async with both_transports(core, settings, metrics) as (http, channel):
            yield Traced(http, channel, exporter)
    finally:
        await core.close()  # the tracing hook shuts tracing down


def _server_span(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name and s.kind == SpanKind.SERVER]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


def _children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    parent_id = parent.context.span_id
    return sorted((s for s in spans if s.parent is not None and s.parent.span_id == parent_id),
                  key=lambda s: s.start_time)  # fmt: skip


def check_tree(spans: list[ReadableSpan], name: str, children: list[str]) -> ReadableSpan:
    """The request's server span continues the caller's trace and has exactly `children`, each inside it;
    every compute span links to a batch span that links back to the request."""
    server = _server_span(spans, name)
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert server.parent is not None and format(server.parent.span_id, "016x") == PARENT_ID
    assert server.parent.is_remote
    kids = _children(spans, server)
    # Decoding comes first and encoding last; the two models' batches may run in either order.
    assert (kids[0].name, kids[-1].name) == ("decode", "encode")
    assert sorted(k.name for k in kids) == sorted(children)
    for kid in kids:
        assert server.start_time <= kid.start_time <= kid.end_time <= server.end_time, kid.name
        assert kid.context.trace_id == server.context.trace_id
    by_id = {s.context.span_id: s for s in spans}
    for compute in (k for k in kids if k.name.endswith("compute")):
        assert len(compute.links) == 1
        batch = by_id[compute.links[0].context.span_id]
        assert batch.name == "batch" and batch.parent is None
        assert batch.attributes is not None and int(batch.attributes["pixelserve.batch_size"]) >= 1
        assert server.context.span_id in {link.context.span_id for link in batch.links}
        assert (batch.start_time, batch.end_time) == (compute.start_time, compute.end_time)
    return server


def _given_back(traceparent: str, server: ReadableSpan) -> None:
    version, trace_id, span_id, _flags = traceparent.split("-")
    assert (version, trace_id) == ("00", TRACE_ID)
    assert span_id == format(server.context.span_id, "016x")


async def test_v2_rest_infer_yields_the_documented_span_tree(traced: Traced) -> None:
    images = random_images(2)
    body = {"inputs": [{"name": "image", "shape": list(images.shape), "datatype": "UINT8",
                        "data": images.ravel().tolist()}]}  # fmt: skip
    response = await traced.http.post(f"/v2/models/{CLASSIFIER}/infer", json=body, headers={"traceparent": TRACEPARENT})
    assert response.status_code == 200, response.text
    spans = traced.spans()
    server = check_tree(spans, "POST /v2/models/{model}/infer", REQUEST_CHILDREN)
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["pixelserve.protocol"] == "v2"
    _given_back(response.headers["traceparent"], server)


async def test_task_rest_classify_traces_the_ood_partner_too(traced: Traced) -> None:
    png = encode_image(random_images(1)[0])
    response = await traced.http.post(f"/v1/models/{CLASSIFIER}:classify", content=png,
                                      headers={"content-type": "image/png", "traceparent": TRACEPARENT})  # fmt: skip
    assert response.status_code == 200, response.text
    server = check_tree(
        traced.spans(), "POST /v1/models/{model}:classify", [*REQUEST_CHILDREN, "ood.queue", "ood.compute"]
    )
    _given_back(response.headers["traceparent"], server)


async def test_grpc_v2_model_infer_yields_the_same_tree(traced: Traced) -> None:
    images = random_images(3)
    request = v2_pb.ModelInferRequest(model_name=CLASSIFIER)
    tensor = request.inputs.add(name="image", datatype="UINT8", shape=list(images.shape))
    tensor.contents.uint_contents.extend(images.ravel().tolist())
    call = v2_grpc.GRPCInferenceServiceStub(traced.channel).ModelInfer(
        request, metadata=(("traceparent", TRACEPARENT),)
    )
    await call
    server = check_tree(traced.spans(), "inference.GRPCInferenceService/ModelInfer", REQUEST_CHILDREN)
    assert server.attributes is not None and server.attributes["rpc.grpc.status_code"] == 0
    _given_back(dict(await call.initial_metadata())["traceparent"], server)


async def test_grpc_task_denoise_yields_the_same_tree(traced: Traced) -> None:
    request = pb.DenoiseRequest(model=DENOISER)
    request.inputs.images.add(encoded=encode_image(random_images(1)[0]))
    call = pb_grpc.PixelServeStub(traced.channel).Denoise(request, metadata=(("traceparent", TRACEPARENT),))
    await call
    server = check_tree(traced.spans(), "pixelserve.v1.PixelServe/Denoise", REQUEST_CHILDREN)
    _given_back(dict(await call.initial_metadata())["traceparent"], server)


async def test_a_failed_grpc_call_ends_its_span_with_the_status_code(traced: Traced) -> None:
    request = v2_pb.ModelInferRequest(model_name="no-such-model")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await v2_grpc.GRPCInferenceServiceStub(traced.channel).ModelInfer(
            request, metadata=(("traceparent", TRACEPARENT),)
        )
    server = _server_span(traced.spans(), "inference.GRPCInferenceService/ModelInfer")
    assert server.attributes is not None
    assert server.attributes["rpc.grpc.status_code"] == raised.value.code().value[0]
    assert _children(traced.spans(), server) == []  # it never reached the core


async def test_one_batch_serving_several_requests_links_each_of_them(traced: Traced) -> None:
    import asyncio

    body = {"inputs": [{"name": "image", "shape": [1, 8, 8, 1], "datatype": "UINT8", "data": [7] * 64}]}
    await asyncio.gather(*(traced.http.post(f"/v2/models/{CLASSIFIER}/infer", json=body) for _ in range(6)))
    spans = traced.spans()
    servers = {s.context.span_id for s in spans if s.kind == SpanKind.SERVER}
    assert len(servers) == 6
    batches = [s for s in spans if s.name == "batch"]
    linked = [link.context.span_id for b in batches for link in b.links]
    assert sorted(linked) == sorted(servers)  # every request served by exactly one batch
    assert sum(int(b.attributes["pixelserve.batch_size"]) for b in batches if b.attributes) == 6


async def test_health_and_metrics_are_not_traced(traced: Traced) -> None:
    for path in ("/v2/health/ready", "/v2/health/live", "/metrics", f"/v2/models/{CLASSIFIER}/ready"):
        assert (await traced.http.get(path)).status_code == 200
    assert traced.spans() == []


def test_tracing_off_does_not_even_import_the_sdk() -> None:
    loaded = "any(m.startswith('opentelemetry.sdk') for m in sys.modules)"
    probe = f"import sys, pixelserve.service.process.cli; print({loaded})"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _console_spans(text: str) -> list[dict]:
    """The console exporter prints one JSON object per span between log lines."""
    decoder, spans, index = json.JSONDecoder(), [], 0
    while (start := text.find("{\n", index)) != -1:
        try:
            value, index = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            index = start + 1
            continue
        if isinstance(value, dict) and "context" in value:
            spans.append(value)
    return spans


def test_serve_with_tracing_flag_exports_spans_named_by_otel_service_name(model_repository: Path,
                                                                          tmp_path: Path) -> None:  # fmt: skip
    env = {"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "pixelserve-test"}
    with server_process(model_repository, tmp_path / "server.log", "--tracing", "true", env=env) as server:
        png = encode_image(random_images(1)[0])
        response = httpx.post(f"{server.url}/v1/models/{CLASSIFIER}:classify", content=png,
                              headers={"content-type": "image/png", "traceparent": TRACEPARENT})  # fmt: skip
        assert response.status_code == 200
        assert response.headers["traceparent"].split("-")[1] == TRACE_ID
        server.terminate()
        assert server.wait() == 0
        spans = _console_spans(server.log())
    ours = [s for s in spans if s["context"]["trace_id"] == f"0x{TRACE_ID}"]
    names = sorted(s["name"] for s in ours)
    assert names == sorted(["POST /v1/models/{model}:classify", *REQUEST_CHILDREN, "ood.queue", "ood.compute"])
    assert {s["resource"]["attributes"]["service.name"] for s in spans} == {"pixelserve-test"}
    assert any(s["name"] == "batch" for s in spans)


def test_unknown_exporter_is_refused_at_start(model_repository: Path, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "pixelserve.service", "--model-repository", str(model_repository),
               "--tracing", "true", "--http-port", "0", "--grpc-port", "0"]  # fmt: skip
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "zipkin-v0"}
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 2
    assert "OTEL_TRACES_EXPORTER='zipkin-v0'" in out.stderr
