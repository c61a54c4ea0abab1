"""deploy/nginx/pixelserve.conf with a real nginx in front of a real pixelserve: REST and gRPC pass through,
repository control is blocked at the proxy, and a client that stops sending its headers is nginx's to close."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest

from pixelserve.service.grpc.gen.inference import grpc_service_pb2 as v2_pb
from pixelserve.service.grpc.gen.inference import grpc_service_pb2_grpc as v2_grpc
from tests.deploy.support import ROOT
from tests.prerequisites import require
from tests.service.grpc_support import free_port
from tests.service.models import CLASSIFIER, build_repository, encode_image, random_images
from tests.service.rest_support import server_process

CONFIG = ROOT / "deploy" / "nginx" / "pixelserve.conf"
HEADER_TIMEOUT_S = 2


@dataclass(frozen=True)
class Proxy:
    http: str
    grpc: str


def render(rest_port: int, grpc_port: int, http_listen: int, grpc_listen: int) -> str:
    """The shipped file with the test's ports and a short header timeout; nothing else changes."""
    text = CONFIG.read_text()
    for old, new in (("127.0.0.1:8000", f"127.0.0.1:{rest_port}"), ("127.0.0.1:8001", f"127.0.0.1:{grpc_port}"),
                     ("listen 8080;", f"listen 127.0.0.1:{http_listen};"),
                     ("listen 8081 http2;", f"listen 127.0.0.1:{grpc_listen} http2;"),
                     ("client_header_timeout 10s;", f"client_header_timeout {HEADER_TIMEOUT_S}s;")):  # fmt: skip
        assert old in text, old
        text = text.replace(old, new)
    return text


@contextlib.contextmanager
def nginx(site: str, workdir: Path) -> Iterator[None]:
    for folder in ("logs", "temp"):
        (workdir / folder).mkdir()
    (workdir / "site.conf").write_text(site)
    (workdir / "nginx.conf").write_text(
        f"daemon off;\nworker_processes 1;\npid {workdir}/nginx.pid;\nerror_log {workdir}/logs/error.log warn;\n"
        "events { worker_connections 256; }\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {workdir}/temp/body;\n"
        f"  proxy_temp_path {workdir}/temp/proxy;\n  include {workdir}/site.conf;\n}}\n"
    )
    command = ["nginx", "-p", str(workdir), "-c", str(workdir / "nginx.conf")]
    subprocess.run([*command, "-t", "-q"], check=True, capture_output=True)
    process = subprocess.Popen(command, stderr=subprocess.PIPE)
    try:
        yield
    finally:
        process.terminate()
        process.wait(10)


def wait_for(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Proxy]:
    require(shutil.which("nginx") is not None, "nginx not installed (Debian nginx-light)")
    repository = build_repository(tmp_path / "models")
    with server_process(repository, tmp_path / "server.log") as server:
        http_listen, grpc_listen = free_port(), free_port()
        (tmp_path / "nginx").mkdir()
        with nginx(render(server.http_port, server.grpc_port, http_listen, grpc_listen), tmp_path / "nginx"):
            wait_for(http_listen)
            wait_for(grpc_listen)
            yield Proxy(f"http://127.0.0.1:{http_listen}", f"127.0.0.1:{grpc_listen}")


async def test_rest_and_grpc_pass_through_and_repository_control_is_blocked(proxy: Proxy) -> None:
    png = encode_image(random_images(1)[0])
    async with httpx.AsyncClient(base_url=proxy.http, timeout=10) as http:
        classified = await http.post(f"/v1/models/{CLASSIFIER}:classify", content=png)
        unload = await http.post(f"/v2/repository/models/{CLASSIFIER}/unload")
        ready = await http.get(f"/v2/models/{CLASSIFIER}/ready")
    assert classified.status_code == 200 and classified.json()["model"]["name"] == CLASSIFIER
    assert unload.status_code == 403 and ready.status_code == 200
    async with grpc.aio.insecure_channel(proxy.grpc) as channel:
        stub = v2_grpc.GRPCInferenceServiceStub(channel)
        tensor = v2_pb.ModelInferRequest.InferInputTensor(name="image", datatype="BYTES", shape=[1])
        tensor.contents.bytes_contents.append(png)
        answer = await stub.ModelInfer(v2_pb.ModelInferRequest(model_name=CLASSIFIER, inputs=[tensor]), timeout=10)
        assert answer.model_name == CLASSIFIER and len(answer.outputs) == 1
        with pytest.raises(grpc.aio.AioRpcError) as blocked:
            await stub.RepositoryModelUnload(v2_pb.RepositoryModelUnloadRequest(model_name=CLASSIFIER), timeout=10)
        assert blocked.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_client_that_stops_sending_headers_is_closed_by_nginx(proxy: Proxy) -> None:
    host, port = proxy.http.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=HEADER_TIMEOUT_S + 10) as slow:
        slow.sendall(b"POST /v1/models/x:classify HTTP/1.1\r\nHost: x\r\n")  # and never the rest
        while slow.recv(4096):
            pass  # nginx may answer 408 first; the point is that it closes
    assert time.monotonic() - started < HEADER_TIMEOUT_S + 5
