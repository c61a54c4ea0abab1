"""The same V2 requests over REST and gRPC get the same answers, field by field.

Normalising the two spellings: a REST JSON body is parsed into the protobuf message the gRPC method answers
(any field REST sends that gRPC cannot is an error there), then both messages are compared whole.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from google.protobuf import json_format

from pixelserve.service.grpc.gen.inference import grpc_service_pb2 as pb
from pixelserve.service.grpc.gen.inference import grpc_service_pb2_grpc as pb_grpc
from pixelserve.service.grpc.gen.inference import model_config_pb2 as config_pb
from pixelserve.service.observe.metrics import Metrics
from pixelserve.service.settings import Settings
from pixelserve.service.wiring import build_core
from tests.service.grpc_support import grpc_server
from tests.service.models import CLASSIFIER, encode_image, random_images
from tests.service.rest_support import rest_server
from tests.service.transports import both_transports

COMMITTED = Path(__file__).resolve().parents[2] / "models"


class Transports:
    def __init__(self, http: httpx.AsyncClient, stub: pb_grpc.GRPCInferenceServiceStub) -> None:
        self.http = http
        self.stub = stub

    async def rest(self, path: str, into: pb.Message) -> pb.Message:
        response = await self.http.get(path)
        assert response.status_code == 200, response.text
        return json_format.ParseDict(response.json(), into)


@pytest.fixture
async def committed(settings: Settings, metrics: Metrics) -> AsyncIterator[Transports]:
    """REST and gRPC around one core serving the committed default model repository."""
    # (no warm-up or gate: start-up time; the gate has tests of its own)
    repo_settings = settings.model_copy(
        update={"model_repository": COMMITTED, "max_batch_size": 32, "warmup": False, "quality_gate": False}
    )
    core = await build_core(repo_settings, metrics)
    try:
        async with both_transports(core, repo_settings, metrics) as (http, channel):
            yield Transports(http, pb_grpc.GRPCInferenceServiceStub(channel))
    finally:
        await core.close()


def committed_models() -> list[str]:
    return sorted(p.name for p in COMMITTED.iterdir() if p.is_dir())


async def test_metadata_config_and_statistics_agree_for_every_committed_model(committed: Transports) -> None:
    names = committed_models()
    assert len(names) >= 5
    for name in names:
        image = np.zeros((1, *await _input_shape(committed, name)), dtype=np.uint8)
        for _ in range(2):  # the same traffic reaches both counters before they are read
            await committed.stub.ModelInfer(_uint8_request(name, image))
        rest_meta = await committed.rest(f"/v2/models/{name}", pb.ModelMetadataResponse())
        grpc_meta = await committed.stub.ModelMetadata(pb.ModelMetadataRequest(name=name))
        assert rest_meta == grpc_meta, name

        rest_config = await committed.rest(f"/v2/models/{name}/config", config_pb.ModelConfig())
        grpc_config = (await committed.stub.ModelConfig(pb.ModelConfigRequest(name=name))).config
        assert rest_config == grpc_config, name
        assert rest_config.dynamic_batching.default_queue_policy.max_queue_size > 0

        rest_stats = await committed.rest(f"/v2/models/{name}/stats", pb.ModelStatisticsResponse())
        grpc_stats = await committed.stub.ModelStatistics(pb.ModelStatisticsRequest(name=name))
        assert rest_stats == grpc_stats, name
        (model,) = grpc_stats.model_stats
        counts = model.inference_stats
        assert counts.success.count == 2
        # perf_analyzer refuses statistics whose compute counts differ.
        assert counts.compute_input.count == counts.compute_infer.count == counts.compute_output.count == 2
        assert counts.compute_infer.ns > 0 and sum(b.compute_infer.count for b in model.batch_stats) >= 1


async def test_server_metadata_and_repository_index_agree(committed: Transports) -> None:
    assert await committed.rest("/v2", pb.ServerMetadataResponse()) == await committed.stub.ServerMetadata(
        pb.ServerMetadataRequest()
    )
    response = await committed.http.post("/v2/repository/index", json={})
    rest_index = json_format.ParseDict({"models": response.json()}, pb.RepositoryIndexResponse())
    assert rest_index == await committed.stub.RepositoryIndex(pb.RepositoryIndexRequest())


async def _input_shape(committed: Transports, name: str) -> list[int]:
    metadata = await committed.stub.ModelMetadata(pb.ModelMetadataRequest(name=name))
    return list(metadata.inputs[0].shape[1:])


def _uint8_request(name: str, images: np.ndarray) -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest.InferInputTensor(name="image", datatype="UINT8", shape=images.shape)
    return pb.ModelInferRequest(model_name=name, inputs=[tensor], raw_input_contents=[images.tobytes()])


@pytest.fixture
async def tiny(core, settings, metrics) -> AsyncIterator[Transports]:
    async with (
        rest_server(core, settings, metrics) as url,
        grpc_server(core, settings, metrics) as address,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
        grpc.aio.insecure_channel(address) as channel,
    ):
        yield Transports(http, pb_grpc.GRPCInferenceServiceStub(channel))


def _bytes_over_both(shape: list[int], count: int) -> tuple[dict, pb.ModelInferRequest]:
    pngs = [encode_image(x) for x in random_images(count, seed=5)]
    body = {"inputs": [{"name": "image", "shape": shape, "datatype": "BYTES",
                        "data": [base64.b64encode(p).decode() for p in pngs]}]}  # fmt: skip
    tensor = pb.ModelInferRequest.InferInputTensor(name="image", datatype="BYTES", shape=shape)
    tensor.contents.bytes_contents.extend(pngs)
    return body, pb.ModelInferRequest(model_name=CLASSIFIER, inputs=[tensor])


@pytest.mark.parametrize(
    ("shape", "accepted"),
    [([2], True), ([2, 1], True), ([2, 2], False), ([1, 2], False), ([], False)],
    ids=["N", "N-1", "2x2", "1x2", "scalar"],
)
async def test_bytes_shapes_are_accepted_or_refused_alike(tiny: Transports, shape: list[int], accepted: bool) -> None:
    count = int(np.prod(shape)) if shape else 1
    body, request = _bytes_over_both(shape, count)
    rest = await tiny.http.post(f"/v2/models/{CLASSIFIER}/infer", json=body)
    try:
        grpc_response = await tiny.stub.ModelInfer(request)
        grpc_code = grpc.StatusCode.OK
    except grpc.aio.AioRpcError as error:
        grpc_response, grpc_code = None, error.code()
    if accepted:
        assert rest.status_code == 200 and grpc_code == grpc.StatusCode.OK
        rest_out = np.asarray(rest.json()["outputs"][0]["data"], dtype=np.float32)
        assert grpc_response is not None
        np.testing.assert_array_equal(rest_out, np.asarray(grpc_response.outputs[0].contents.fp32_contents))
    else:
        assert rest.status_code == 400 and grpc_code == grpc.StatusCode.INVALID_ARGUMENT
