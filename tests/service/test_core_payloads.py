"""The core logs what comes through the adapters: every transport and task, with the transport's name, the
request id the access log gives back and the trace id; refused requests as error rows; the core's
in-process callers (batch scoring, verify) never."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest

from pixelserve.service.core.types import ImageInputs, ModelRef
from pixelserve.service.grpc.gen.inference import grpc_service_pb2 as v2_pb
from pixelserve.service.grpc.gen.inference import grpc_service_pb2_grpc as v2_grpc
from pixelserve.service.grpc.gen.pixelserve.v1 import pixelserve_pb2 as pb
from pixelserve.service.grpc.gen.pixelserve.v1 import pixelserve_pb2_grpc as pb_grpc
from pixelserve.service.grpc.server import create_grpc_server
from pixelserve.service.observe.access_log import AccessLog
from pixelserve.service.observe.metrics import Metrics
from pixelserve.service.observe.payloads.shards import read_rows, shard_files
from pixelserve.service.settings import Settings
from pixelserve.service.wiring import build_core
from tests.service.grpc_support import free_port
from tests.service.models import CLASSIFIER, DENOISER, encode_image, random_images
from tests.service.rest_support import rest_server


class Discard:
    def write(self, data: bytes) -> int:
        return len(data)

    def flush(self) -> None:
        pass


@dataclass
class Logged:
    http: httpx.AsyncClient
    channel: grpc.aio.Channel
    core: Any
    directory: Path

    async def rows(self) -> list[dict[str, Any]]:
        await self.core.close()  # commits the shards
        return [row for path in shard_files(self.directory) for row in read_rows(path)]


@pytest.fixture
async def logged(settings: Settings, metrics: Metrics, tmp_path: Path) -> AsyncIterator[Logged]:
    settings = settings.model_copy(update={"payload_log_dir": tmp_path / "log", "payload_log_format": "jsonl"})
    access = AccessLog(metrics, 100, stream=Discard())  # type: ignore[arg-type]  # for the request ids
    core = await build_core(settings, metrics, access=access)
    grpc_settings = settings.model_copy(update={"grpc_port": free_port()})
    server = create_grpc_server(core, grpc_settings, metrics)
    await server.start()
    try:
        async with (
            rest_server(core, settings, metrics) as url,
            httpx.AsyncClient(base_url=url, timeout=30) as http,
            grpc.aio.insecure_channel(f"127.0.0.1:{grpc_settings.grpc_port}") as channel,
        ):
            yield Logged(http, channel, core, tmp_path / "log")
    finally:
        await server.stop(None)
        await core.close()  # closes the access log too


async def test_each_transport_and_task_is_logged_under_its_protocol(logged: Logged) -> None:
    images = random_images(2, seed=4)
    response = await logged.http.post(f"/v1/models/{CLASSIFIER}:classify", content=encode_image(images[0]))
    assert response.status_code == 200

    denoise = pb.DenoiseRequest(model=DENOISER)
    denoise.inputs.images.add(encoded=encode_image(images[1]))
    call = pb_grpc.PixelServeStub(logged.channel).Denoise(denoise, metadata=(("x-request-id", "scan-9"),))
    await call

    infer = v2_pb.ModelInferRequest(model_name=CLASSIFIER)
    tensor = infer.inputs.add(name="image", datatype="UINT8", shape=list(images.shape))
    tensor.contents.uint_contents.extend(images.ravel().tolist())
    await v2_grpc.GRPCInferenceServiceStub(logged.channel).ModelInfer(infer)

    with pytest.raises(grpc.aio.AioRpcError):
        bad = pb.ClassifyRequest(model=CLASSIFIER)
        bad.inputs.images.add(encoded=b"not an image")
        await pb_grpc.PixelServeStub(logged.channel).Classify(bad, metadata=(("x-request-id", "bad-1"),))

    rows = await logged.rows()
    by_protocol = sorted((r["protocol"], r["task"], r["status"]) for r in rows)
    assert by_protocol == [
        ("grpc", "classify", "error"),
        ("grpc", "denoise", "ok"),
        ("grpc-v2", "infer", "ok"),
        ("grpc-v2", "infer", "ok"),  # one row per image
        ("rest", "classify", "ok"),
    ]
    ids = {(r["protocol"], r["task"]): r["request_id"] for r in rows}
    assert ids[("grpc", "denoise")] == "scan-9" and ids[("grpc", "classify")] == "bad-1"
    assert all(r["model"] in (CLASSIFIER, DENOISER) for r in rows)
    error = next(r for r in rows if r["status"] == "error")
    assert error["image"] == b"not an image"  # as received, so the failure can be looked at


async def test_in_process_callers_are_not_logged(logged: Logged) -> None:
    """Batch scoring and verify call the core directly, without an adapter: nothing of theirs is logged."""
    await logged.core.classify(ModelRef(CLASSIFIER), ImageInputs(tensor=random_images(3)))
    await logged.core.infer(ModelRef(CLASSIFIER), ImageInputs(tensor=random_images(1).astype(np.float32)))
    assert await logged.rows() == []
