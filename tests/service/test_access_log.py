"""The access log: JSON lines from the real server process for REST, V2 and gRPC requests, request ids
taken and given back, credentials never written, probes left out, and a stuck writer never holding a request.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import grpc
import httpx
import pytest
from prometheus_client import CollectorRegistry

from pixelserve.service.grpc.gen.pixelserve.v1 import pixelserve_pb2 as pb
from pixelserve.service.grpc.gen.pixelserve.v1 import pixelserve_pb2_grpc as pb_grpc
from pixelserve.service.observe.access_log import AccessLog, RequestIds
from pixelserve.service.observe.metrics import Metrics
from tests.service.models import CLASSIFIER, encode_image, random_images
from tests.service.rest_support import ServerProcess, server_process

API_KEY = "sesame-9f2c1e"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def entries(log: str) -> list[dict]:
    return [json.loads(line) for line in log.splitlines() if line.startswith('{"time"')]


def _stopped(server: ServerProcess) -> str:
    server.terminate()
    assert server.wait() == 0
    return server.log()


def test_every_protocol_writes_one_json_line_per_request(model_repository: Path, tmp_path: Path) -> None:
    with server_process(model_repository, tmp_path / "server.log", "--api-key", API_KEY) as server:
        auth = {"x-api-key": API_KEY, "authorization": f"Bearer {API_KEY}"}
        png = encode_image(random_images(1)[0])
        rest = httpx.post(f"{server.url}/v1/models/{CLASSIFIER}:classify", content=png,
                          headers={**auth, "x-request-id": "order-17", "user-agent": "scanner/2.1"})  # fmt: skip
        assert rest.status_code == 200 and rest.headers["x-request-id"] == "order-17"
        missing = httpx.get(f"{server.url}/v2/models/no-such-model", headers=auth)
        assert missing.status_code == 404 and len(missing.headers["x-request-id"]) == 32
        httpx.get(f"{server.url}/v2/health/ready")  # a probe: not logged

        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            stub = pb_grpc.PixelServeStub(channel)
            request = pb.ClassifyRequest(model=CLASSIFIER)
            request.inputs.images.add(encoded=png)
            metadata = (("x-api-key", API_KEY), ("x-request-id", "grpc-1"))
            _, call = stub.Classify.with_call(request, metadata=metadata)
            assert dict(call.trailing_metadata())["x-request-id"] == "grpc-1"
            with pytest.raises(grpc.RpcError) as bad:
                stub.Classify(pb.ClassifyRequest(model=CLASSIFIER), metadata=metadata)  # no images
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        log = _stopped(server)

    assert API_KEY not in log
    found = entries(log)
    assert [(e["protocol"], e.get("path") or e.get("rpc")) for e in found] == [
        ("http", f"/v1/models/{CLASSIFIER}:classify"),
        ("http", "/v2/models/no-such-model"),
        ("grpc", "pixelserve.v1.PixelServe/Classify"),
        ("grpc", "pixelserve.v1.PixelServe/Classify"),
    ]
    classify, missing_entry, grpc_ok, grpc_bad = found
    assert classify["status"] == 200 and classify["method"] == "POST" and classify["version"] == 1
    assert (classify["model"], classify["task"], classify["request_id"]) == (CLASSIFIER, "classify", "order-17")
    assert classify["user_agent"] == "scanner/2.1" and classify["bytes_in"] == len(png) and classify["bytes_out"] > 0
    assert classify["client"].startswith("127.0.0.1:") and 0 < classify["duration_ms"] < 10_000
    assert time.time() - 120 < _epoch(classify["time"]) <= time.time()
    assert missing_entry["status"] == 404 and missing_entry["request_id"] == missing.headers["x-request-id"]
    assert missing_entry["model"] == "no-such-model" and "version" not in missing_entry
    assert (grpc_ok["code"], grpc_ok["model"], grpc_ok["task"], grpc_ok["request_id"]) == (
        "OK", CLASSIFIER, "classify", "grpc-1")  # fmt: skip
    assert grpc_bad["code"] == "INVALID_ARGUMENT" and grpc_ok["version"] == 1
    assert "trace_id" not in classify  # tracing is off


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def test_with_tracing_each_entry_carries_its_trace_id(model_repository: Path, tmp_path: Path) -> None:
    env = {"OTEL_TRACES_EXPORTER": "console"}
    with server_process(model_repository, tmp_path / "server.log", "--tracing", "true", env=env) as server:
        png = encode_image(random_images(1)[0])
        httpx.post(f"{server.url}/v1/models/{CLASSIFIER}:classify", content=png, headers={"traceparent": TRACEPARENT})
        log = _stopped(server)
    (entry,) = [e for e in entries(log) if e.get("protocol") == "http"]
    assert entry["trace_id"] == TRACEPARENT.split("-")[1]


def test_access_log_false_writes_no_lines(model_repository: Path, tmp_path: Path) -> None:
    with server_process(model_repository, tmp_path / "server.log", "--access-log", "false") as server:
        httpx.post(f"{server.url}/v1/models/{CLASSIFIER}:classify", content=encode_image(random_images(1)[0]))
        log = _stopped(server)
    assert entries(log) == []


class StuckStream:
    """A stderr whose reader stopped: every write blocks until released."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.written = b""

    def write(self, data: bytes) -> int:
        self.released.wait()
        self.written += data
        return len(data)

    def flush(self) -> None:
        pass


def test_a_stuck_writer_drops_and_counts_instead_of_blocking() -> None:
    metrics = Metrics(CollectorRegistry())
    stream = StuckStream()
    log = AccessLog(metrics, capacity=10, stream=stream)  # type: ignore[arg-type]
    started = time.perf_counter()
    for i in range(1000):
        log.record({"started": time.time(), "protocol": "http", "path": f"/{i}"})
    assert time.perf_counter() - started < 0.5  # 1000 records never waited on the stuck stream
    dropped = metrics.registry.get_sample_value("pixelserve_access_log_dropped_total")
    assert dropped is not None and 1000 - 20 <= dropped < 1000  # at most the queue and one batch in hand
    stream.released.set()
    log.close()
    lines = stream.written.decode().splitlines()
    assert len(lines) == 1000 - dropped and all(json.loads(line)["protocol"] == "http" for line in lines)


@pytest.mark.parametrize(
    ("given", "expected"),
    [("abc-123", "abc-123"), ("x" * 200, "x" * 128), ("bad\nline", None), ("ünï", None), ("", None), (None, None)],
)
def test_client_request_ids_are_kept_when_printable_ascii_and_cut_to_128(given: str | None, expected: str | None
                                                                          ) -> None:  # fmt: skip
    ids = RequestIds()
    rid = ids(given)
    if expected is not None:
        assert rid == expected
    else:
        assert len(rid) == 32 and rid.isalnum() and rid != ids(given) and rid[:16] != RequestIds()(None)[:16]
