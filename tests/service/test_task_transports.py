"""The same task-API requests over REST (``/v1``) and gRPC (``pixelserve.v1``) get the same answers, field by
field, on every committed model: the index, the metadata and every task the model does, with and without options.

Normalising the two spellings as test_v2_transports does: a REST JSON body is parsed into the protobuf message the
gRPC method answers (a field REST sends that the message lacks is an error there), then both are compared whole.
Three spellings differ by design and are mapped here: REST's ``image`` is the message's ``png``; the anomaly map
is JSON lists at six decimals against a float32 tensor; the metadata's typed fields are gRPC's extra view of
``spec``, which both carry whole.
"""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from google.protobuf import json_format
from PIL import Image

from pixelserve.modelspec import OUTPUT_ANOMALY_MAP, OUTPUT_LATENT
from pixelserve.service.grpc.converters import array_from_tensor
from pixelserve.service.grpc.gen.pixelserve.v1 import pixelserve_pb2 as pb
from pixelserve.service.grpc.gen.pixelserve.v1 import pixelserve_pb2_grpc as pb_grpc
from pixelserve.service.observe.metrics import Metrics
from pixelserve.service.settings import Settings
from pixelserve.service.wiring import build_core
from tests.service.test_v2_transports import COMMITTED, committed_models
from tests.service.transports import both_transports

# The typed fields gRPC's ModelMetadata has besides REST's (each a copy of its place in `spec`).
TYPED_METADATA = ("description", "inputs", "outputs", "preprocessing", "labels", "anomaly", "ood_model",
                  "parameters", "created_at")  # fmt: skip
# Options as REST's query string names them; _batch sets the same on gRPC's ImageBatch.
OPTIONS: list[dict[str, str]] = [
    {},
    {"resize": "letterbox", "return_input": "true"},
    {"resize": "center-crop", "normalize": "none"},
]


class Transports:
    def __init__(self, http: httpx.AsyncClient, stub: pb_grpc.PixelServeStub) -> None:
        self.http = http
        self.stub = stub
        self.metadata: dict[str, dict[str, Any]] = {}

    async def rest_json(self, path: str) -> dict[str, Any]:
        response = await self.http.get(path)
        assert response.status_code == 200, response.text
        return response.json()

    async def model(self, name: str) -> dict[str, Any]:
        if name not in self.metadata:
            self.metadata[name] = await self.rest_json(f"/v1/models/{name}")
        return self.metadata[name]


@pytest.fixture
async def committed(settings: Settings, metrics: Metrics) -> AsyncIterator[Transports]:
    """REST and gRPC around one core serving the committed model repository (no warm-up or golden gate)."""
    repo_settings = settings.model_copy(
        update={"model_repository": COMMITTED, "max_batch_size": 32, "warmup": False, "quality_gate": False}
    )
    core = await build_core(repo_settings, metrics)
    try:
        async with both_transports(core, repo_settings, metrics) as (http, channel):
            yield Transports(http, pb_grpc.PixelServeStub(channel))
    finally:
        await core.close()


def _pngs(count: int, seed: int) -> list[bytes]:
    """RGB noise at a size no committed model takes, so resizing and colour conversion are exercised."""
    rng = np.random.default_rng(seed)
    files = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, size=(29, 37, 3), dtype=np.uint8)).save(buffer, format="PNG")
        files.append(buffer.getvalue())
    return files


def _batch(pngs: list[bytes], options: dict[str, str]) -> pb.ImageBatch:
    return pb.ImageBatch(
        images=[pb.Image(encoded=p) for p in pngs],
        resize=options.get("resize", ""),
        normalize=options.get("normalize", ""),
        return_input=options.get("return_input") == "true",
    )


async def _rest_task(committed: Transports, name: str, task: str, pngs: list[bytes], query: dict[str, str],
                     multipart: bool) -> dict[str, Any]:  # fmt: skip
    """One task over REST: several images as multipart (FastAPI's route), one as the raw body (the fast path)."""
    path = f"/v1/models/{name}:{task}"
    headers = {"Accept": "application/json"}
    if multipart:
        files = [("files", (f"{i}.png", png, "image/png")) for i, png in enumerate(pngs)]
        response = await committed.http.post(path, params=query, files=files, headers=headers)
    else:
        (png,) = pngs
        headers["Content-Type"] = "image/png"
        response = await committed.http.post(path, params=query, content=png, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def _rest_images(body: dict[str, Any], into: Any) -> tuple[Any, list[Any]]:
    """A REST denoise/reconstruct answer as the gRPC message, and its anomaly maps (lists, or None)."""
    maps = []
    for result in body["results"]:
        result["png"] = result.pop("image")
        maps.append(result.pop("anomaly_map"))
    return json_format.ParseDict(body, into), maps


def _grpc_maps(message: Any) -> list[np.ndarray | None]:
    maps = []
    for result in message.results:
        maps.append(array_from_tensor(result.anomaly_map) if result.HasField("anomaly_map") else None)
        result.ClearField("anomaly_map")
    return maps


def _assert_same_maps(rest: list[Any], grpc_maps: list[np.ndarray | None]) -> None:
    assert len(rest) == len(grpc_maps)
    for json_map, tensor in zip(rest, grpc_maps, strict=True):
        assert (json_map is None) == (tensor is None)
        if tensor is not None:  # JSON has six decimals, rounded in float32
            np.testing.assert_allclose(np.asarray(json_map, dtype=np.float64), tensor, rtol=0, atol=1e-6)


async def _compare_classify(committed: Transports, name: str, pngs: list[bytes], options: dict[str, str],
                            top_k: int | None, multipart: bool) -> None:  # fmt: skip
    query = {**options, **({"top_k": str(top_k)} if top_k else {})}
    rest = json_format.ParseDict(
        await _rest_task(committed, name, "classify", pngs, query, multipart), pb.ClassifyResponse()
    )
    grpc_answer = await committed.stub.Classify(
        pb.ClassifyRequest(model=name, inputs=_batch(pngs, options), top_k=top_k or 0)
    )
    assert rest == grpc_answer, (name, options, top_k)
    labels = len((await committed.model(name))["spec"]["labels"])
    assert all(len(r.top) == min(top_k or 5, labels) for r in grpc_answer.results)
    assert bool(grpc_answer.prepared.inputs) == (options.get("return_input") == "true")


async def _compare_images(committed: Transports, name: str, task: str, pngs: list[bytes], options: dict[str, str],
                          multipart: bool) -> None:  # fmt: skip
    method, into = (
        (committed.stub.Denoise, pb.DenoiseResponse) if task == "denoise" else (committed.stub.Reconstruct,
                                                                                 pb.ReconstructResponse)
    )  # fmt: skip
    rest, rest_maps = _rest_images(await _rest_task(committed, name, task, pngs, options, multipart), into())
    request_type = pb.DenoiseRequest if task == "denoise" else pb.ReconstructRequest
    grpc_answer = await method(request_type(model=name, inputs=_batch(pngs, options)))
    _assert_same_maps(rest_maps, _grpc_maps(grpc_answer))
    assert rest == grpc_answer, (name, task, options)


async def _compare_encode(committed: Transports, name: str, pngs: list[bytes], options: dict[str, str],
                          multipart: bool) -> None:  # fmt: skip
    rest = json_format.ParseDict(
        await _rest_task(committed, name, "encode", pngs, options, multipart), pb.EncodeResponse()
    )
    grpc_answer = await committed.stub.Encode(pb.EncodeRequest(model=name, inputs=_batch(pngs, options)))
    assert rest == grpc_answer, (name, options)
    assert all(len(r.latent) > 0 for r in grpc_answer.results)


async def test_the_index_is_the_same(committed: Transports) -> None:
    rest = await committed.rest_json("/v1/models")
    listed = await committed.stub.ListModels(pb.ListModelsRequest())
    assert json_format.ParseDict(rest, pb.ModelIndex()) == listed.index
    assert [m["name"] for m in rest["models"]] == committed_models()
    flat = [(m["name"], v["version"], v["state"], v["reason"]) for m in rest["models"] for v in m["versions"]]
    assert [(m.name, m.version, m.state, m.reason) for m in listed.models] == flat


async def test_metadata_is_the_same_with_its_trust_evidence(committed: Transports) -> None:
    seen = set()
    for name in committed_models():
        rest = await committed.model(name)
        assert await committed.rest_json(f"/v1/models/{name}/versions/{rest['version']}") == rest
        for version in (0, rest["version"]):  # the policy's choice, then the version by number
            grpc_answer = await committed.stub.GetModel(pb.GetModelRequest(model=name, version=version))
            typed = pb.ModelMetadata()
            typed.CopyFrom(grpc_answer)
            for field in TYPED_METADATA:
                grpc_answer.ClearField(field)
            assert json_format.ParseDict(rest, pb.ModelMetadata()) == grpc_answer, name
        # model.json whole, trust evidence included, reads back from gRPC as REST shows it
        spec = json_format.MessageToDict(typed.spec)
        assert spec == rest["spec"], name
        seen |= {key for key in ("calibration", "golden", "drift", "quantization", "parity") if spec.get(key)}
        # the typed fields are copies of their places in spec
        assert list(typed.labels) == (spec.get("labels") or []), name
        assert typed.preprocessing.height == spec["preprocessing"]["height"], name
        assert [list(t.shape) for t in typed.inputs] == [t["shape"] for t in spec["inputs"]], name
        assert typed.ood_model == ((spec.get("pairing") or {}).get("ood_model") or ""), name
    assert seen == {"calibration", "golden", "drift", "quantization", "parity"}


@pytest.mark.parametrize("options", OPTIONS, ids=["defaults", "letterbox-echo", "center-crop-none"])
async def test_every_task_of_every_model_answers_the_same(committed: Transports, options: dict[str, str]) -> None:
    tasks_run = set()
    for i, name in enumerate(committed_models()):
        meta = await committed.model(name)
        task, outputs = meta["task"], {o["name"] for o in meta["spec"]["outputs"]}
        one, batch = _pngs(1, seed=i), _pngs(3, seed=100 + i)
        for pngs, multipart in ((one, False), (batch, True)):
            if task == "classify":
                for top_k in (None, 1, 3, 50):
                    await _compare_classify(committed, name, pngs, options, top_k, multipart)
            else:
                await _compare_images(committed, name, task, pngs, options, multipart)
            if OUTPUT_LATENT in outputs:
                await _compare_encode(committed, name, pngs, options, multipart)
                tasks_run.add("encode")
        tasks_run |= {task, *({"anomaly_map"} if OUTPUT_ANOMALY_MAP in outputs else ())}
    assert tasks_run == {"classify", "denoise", "reconstruct", "encode", "anomaly_map"}


async def test_a_paired_classifier_scores_ood_alike(committed: Transports) -> None:
    paired = [n for n in committed_models() if (await committed.model(n))["spec"].get("pairing")]
    assert paired
    for name in paired:
        answer = await committed.stub.Classify(pb.ClassifyRequest(model=name, inputs=_batch(_pngs(2, seed=7), {})))
        assert all(r.HasField("ood_score") and r.HasField("is_ood") for r in answer.results)
        await _compare_classify(committed, name, _pngs(2, seed=7), {}, 2, True)


@pytest.mark.parametrize(
    ("version", "status", "code"),
    [(7, 404, grpc.StatusCode.NOT_FOUND), (None, 400, grpc.StatusCode.INVALID_ARGUMENT)],
    ids=["unknown-version", "wrong-task"],
)
async def test_refusals_are_the_same(committed: Transports, version: int | None, status: int, code: Any) -> None:
    """An unknown version is not found, a task the model cannot do is invalid, on both transports."""
    name = "mnist-denoiser"
    path = f"/v1/models/{name}" + (f"/versions/{version}" if version else "") + ":classify"
    (png,) = _pngs(1, seed=3)
    rest = await committed.http.post(path, content=png, headers={"Content-Type": "image/png"})
    assert rest.status_code == status
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await committed.stub.Classify(pb.ClassifyRequest(model=name, version=version or 0, inputs=_batch([png], {})))
    assert refused.value.code() == code
    assert rest.json()["error"]["code"] == code.name


async def test_prepared_inputs_are_the_same_pngs(committed: Transports) -> None:
    """return_input: REST's base64 text and gRPC's bytes hold the same PNG, of the model's input size."""
    name = "cifar10-denoiser"
    (png,) = _pngs(1, seed=11)
    body = await _rest_task(committed, name, "denoise", [png], {"return_input": "true"}, multipart=False)
    answer = await committed.stub.Denoise(pb.DenoiseRequest(model=name, inputs=_batch([png], {"return_input": "true"})))
    (rest_input,) = body["prepared"]["inputs"]
    assert base64.b64decode(rest_input) == answer.prepared.inputs[0]
    assert Image.open(io.BytesIO(answer.prepared.inputs[0])).size == (32, 32)
