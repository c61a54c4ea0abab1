"""Safe defaults: an out-of-the-box server listens on loopback only and refuses repository control (load and
unload) over REST and gRPC while it keeps serving; switched on, control works, and behind the API key when
one is set."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from pixelserve.service.grpc.gen.inference import grpc_service_pb2 as v2_pb
from pixelserve.service.grpc.gen.inference import grpc_service_pb2_grpc as v2_grpc
from pixelserve.service.settings import Settings
from tests.service.abuse_support import started_server
from tests.service.grpc_support import grpc_server
from tests.service.models import CLASSIFIER, encode_image, random_images
from tests.service.rest_support import ServerProcess, rest_server

PNG = encode_image(random_images(1)[0])
KEY = "c0ntrol-key"
# 127.0.0.1 in /proc/net/tcp, and as grpc binds it in /proc/net/tcp6 (::ffff:127.0.0.1); ::1
LOOPBACK = {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}


def classify_ok(url: str, headers: dict[str, str] | None = None) -> bool:
    response = httpx.post(f"{url}/v1/models/{CLASSIFIER}:classify", content=PNG, headers=headers, timeout=10)
    return response.status_code == 200


def ready(url: str, headers: dict[str, str] | None = None) -> int:
    return httpx.get(f"{url}/v2/models/{CLASSIFIER}/ready", headers=headers, timeout=10).status_code


def control_rest(url: str, action: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{url}/v2/repository/models/{CLASSIFIER}/{action}", headers=headers, timeout=30)


def control_grpc(port: int, action: str, metadata: tuple[tuple[str, str], ...] = ()) -> grpc.StatusCode:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = v2_grpc.GRPCInferenceServiceStub(channel)
        try:
            if action == "load":
                stub.RepositoryModelLoad(v2_pb.RepositoryModelLoadRequest(model_name=CLASSIFIER), metadata=metadata)
            else:
                stub.RepositoryModelUnload(v2_pb.RepositoryModelUnloadRequest(model_name=CLASSIFIER), metadata=metadata)
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def listening_address(pid: int, port: int) -> list[str]:
    """The local addresses the process listens on for `port`, from /proc/<pid>/net/tcp and tcp6."""
    found = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.append(address)
    return found


def test_default_bind_addresses_are_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PIXELSERVE_HTTP_HOST", "PIXELSERVE_GRPC_HOST", "PIXELSERVE_ALLOW_REPOSITORY_CONTROL"):
        monkeypatch.delenv(name, raising=False)
    defaults = Settings()
    assert (defaults.http_host, defaults.grpc_host) == ("127.0.0.1", "127.0.0.1")
    assert defaults.allow_repository_control is False


@pytest.fixture(scope="module")
def default_server(repository_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """No flags but the test's ports and CPU; in particular no --grpc-host and no --allow-repository-control."""
    with started_server(repository_template, tmp_path_factory.mktemp("defaults")) as process:
        yield process


def test_grpc_listens_on_loopback_only_by_default(default_server: ServerProcess) -> None:
    addresses = listening_address(default_server.process.pid, default_server.grpc_port)
    assert addresses and set(addresses) <= LOOPBACK, addresses


def test_repository_control_is_refused_by_default_and_serving_goes_on(default_server: ServerProcess) -> None:
    url, port = default_server.url, default_server.grpc_port
    for action in ("unload", "load"):
        response = control_rest(url, action)
        assert response.status_code == 403, response.text
        assert "--allow-repository-control" in response.json()["error"], response.text
        assert control_grpc(port, action) == grpc.StatusCode.PERMISSION_DENIED
    assert ready(url) == 200
    assert classify_ok(url)


@pytest.fixture(scope="module")
def keyed_server(repository_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    args = ("--allow-repository-control", "true", "--api-key", KEY)
    with started_server(repository_template, tmp_path_factory.mktemp("keyed"), *args) as process:
        yield process


@pytest.mark.slow
def test_repository_control_when_allowed_needs_the_api_key(keyed_server: ServerProcess) -> None:
    url, port = keyed_server.url, keyed_server.grpc_port
    key = {"X-API-Key": KEY}
    for action in ("unload", "load"):
        assert control_rest(url, action).status_code == 401
        assert control_rest(url, action, {"X-API-Key": "wrong"}).status_code == 401
        assert control_grpc(port, action) == grpc.StatusCode.UNAUTHENTICATED
    assert ready(url, key) == 200, "a refused unload must leave the model serving"

    assert control_rest(url, "unload", key).status_code == 200
    assert ready(url, key) != 200
    assert control_rest(url, "load", key).status_code == 200
    assert ready(url, key) == 200
    assert control_grpc(port, "unload", (("x-api-key", KEY),)) == grpc.StatusCode.OK
    assert ready(url, key) != 200
    assert control_grpc(port, "load", (("x-api-key", KEY),)) == grpc.StatusCode.OK
    assert ready(url, key) == 200
    assert classify_ok(url, key)


async def test_repository_control_when_allowed_works_without_a_key(core, settings, metrics) -> None:
    """The shared `settings` allow control and set no key (in-process server, real sockets)."""
    assert settings.allow_repository_control and settings.api_key is None
    async with (
        rest_server(core, settings, metrics) as url,
        grpc_server(core, settings, metrics) as address,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
        grpc.aio.insecure_channel(address) as channel,
    ):
        stub = v2_grpc.GRPCInferenceServiceStub(channel)
        assert (await http.post(f"/v2/repository/models/{CLASSIFIER}/unload")).status_code == 200
        assert (await http.get(f"/v2/models/{CLASSIFIER}/ready")).status_code != 200
        await stub.RepositoryModelLoad(v2_pb.RepositoryModelLoadRequest(model_name=CLASSIFIER), timeout=30)
        assert (await http.get(f"/v2/models/{CLASSIFIER}/ready")).status_code == 200
        await stub.RepositoryModelUnload(v2_pb.RepositoryModelUnloadRequest(model_name=CLASSIFIER), timeout=30)
        assert (await http.get(f"/v2/models/{CLASSIFIER}/ready")).status_code != 200
        assert (await http.post(f"/v2/repository/models/{CLASSIFIER}/load")).status_code == 200
        assert (await http.post(f"/v1/models/{CLASSIFIER}:classify", content=PNG)).status_code == 200
