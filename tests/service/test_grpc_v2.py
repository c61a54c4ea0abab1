"""The KServe V2 gRPC API with Triton's own clients (tritonclient.grpc sync and aio), unchanged.

The sync client blocks, so its calls run in a thread while the server runs on the test's event loop.
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from pixelserve.modelspec import OUTPUT_ERROR, OUTPUT_PROBABILITIES, OUTPUT_RECONSTRUCTION
from tests.service.grpc_support import grpc_server
from tests.service.models import (
    AUTOENCODER,
    CLASSIFIER,
    DENOISER,
    LABELS,
    encode_image,
    random_images,
    reference_session,
)


@pytest.fixture
async def address(core, settings, metrics) -> AsyncIterator[str]:
    async with grpc_server(core, settings, metrics) as bound:
        yield bound


@pytest.fixture
async def aio_client(address) -> AsyncIterator[triton_aio.InferenceServerClient]:
    client = triton_aio.InferenceServerClient(address)
    yield client
    await client.close()


def reference(repo: Path, name: str, images: np.ndarray, output: str) -> np.ndarray:
    return reference_session(repo, name).run([output], {"image": images})[0]


def uint8_input(images: np.ndarray) -> triton.InferInput:
    tensor = triton.InferInput("image", list(images.shape), "UINT8")
    tensor.set_data_from_numpy(images)
    return tensor


def png_input(images: np.ndarray) -> triton.InferInput:
    tensor = triton.InferInput("image", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array([encode_image(i) for i in images], dtype=object))
    return tensor


async def test_sync_client_sees_a_live_ready_server_and_its_metadata(address) -> None:
    def probe() -> tuple[bool, bool, dict]:
        client = triton.InferenceServerClient(address)
        try:
            return client.is_server_live(), client.is_server_ready(), client.get_server_metadata(as_json=True)
        finally:
            client.close()

    live, ready, metadata = await asyncio.to_thread(probe)
    assert live and ready
    assert metadata["name"] == "pixelserve"
    assert {"classification", "model_repository", "statistics"} <= set(metadata["extensions"])


async def test_sync_client_reads_model_metadata_and_config(address, settings) -> None:
    def read() -> tuple[bool, dict, dict]:
        client = triton.InferenceServerClient(address)
        try:
            return (
                client.is_model_ready(CLASSIFIER),
                client.get_model_metadata(CLASSIFIER, as_json=True),
                client.get_model_config(CLASSIFIER, as_json=True)["config"],
            )
        finally:
            client.close()

    ready, metadata, config = await asyncio.to_thread(read)
    assert ready
    assert metadata["versions"] == ["1"] and metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [{"name": "image", "datatype": "UINT8", "shape": ["-1", "8", "8", "1"]}]
    assert metadata["outputs"] == [{"name": OUTPUT_PROBABILITIES, "datatype": "FP32", "shape": ["-1", "3"]}]
    assert config["max_batch_size"] == settings.max_batch_size
    assert config["input"][0]["data_type"] == "TYPE_UINT8" and config["input"][0]["dims"] == ["8", "8", "1"]
    assert config["input"][0]["format"] == "FORMAT_NHWC"
    assert config["output"][0]["data_type"] == "TYPE_FP32" and config["output"][0]["dims"] == ["3"]
    assert config["instance_group"][0]["kind"] == "KIND_CPU"
    assert config["parameters"]["labels"]["string_value"] == ",".join(LABELS)


async def test_sync_uint8_infer_matches_onnxruntime(address, model_repository) -> None:
    images = random_images(5, seed=21)

    def infer() -> triton.InferResult:
        client = triton.InferenceServerClient(address)
        try:
            return client.infer(CLASSIFIER, [uint8_input(images)], request_id="q1")
        finally:
            client.close()

    result = await asyncio.to_thread(infer)
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == (CLASSIFIER, "1", "q1")
    expected = reference(model_repository, CLASSIFIER, images, OUTPUT_PROBABILITIES)
    np.testing.assert_allclose(result.as_numpy(OUTPUT_PROBABILITIES), expected, rtol=1e-5, atol=1e-7)


async def test_aio_bytes_input_of_pngs_matches_onnxruntime(aio_client, model_repository) -> None:
    images = random_images(3, seed=22)
    outputs = [triton_aio.InferRequestedOutput(OUTPUT_RECONSTRUCTION), triton_aio.InferRequestedOutput(OUTPUT_ERROR)]
    result = await aio_client.infer(AUTOENCODER, [png_input(images)], outputs=outputs)
    assert [o.name for o in result.get_response().outputs] == [OUTPUT_RECONSTRUCTION, OUTPUT_ERROR]
    for name in (OUTPUT_RECONSTRUCTION, OUTPUT_ERROR):
        expected = reference(model_repository, AUTOENCODER, images, name)
        np.testing.assert_allclose(result.as_numpy(name), expected, rtol=1e-5, atol=1e-7)


async def test_classification_extension_answers_probability_index_label(aio_client, model_repository) -> None:
    images = random_images(4, seed=23)
    outputs = [triton_aio.InferRequestedOutput(OUTPUT_PROBABILITIES, class_count=2)]
    result = await aio_client.infer(CLASSIFIER, [uint8_input(images)], outputs=outputs)
    strings = result.as_numpy(OUTPUT_PROBABILITIES)
    assert strings.shape == (4, 2)
    expected = reference(model_repository, CLASSIFIER, images, OUTPUT_PROBABILITIES)
    for row, probabilities in zip(strings, expected, strict=True):
        order = np.argsort(-probabilities, kind="stable")[:2]
        parsed = [item.decode().split(":") for item in row]
        assert [int(index) for _, index, _ in parsed] == order.tolist()
        assert [label for _, _, label in parsed] == [LABELS[i] for i in order]
        np.testing.assert_allclose([float(p) for p, _, _ in parsed], probabilities[order], atol=1e-6)


async def test_statistics_count_images_and_batches(aio_client) -> None:
    images = random_images(3, seed=24)
    for _ in range(2):
        await aio_client.infer(DENOISER, [uint8_input(images)])
    stats = await aio_client.get_inference_statistics(DENOISER, as_json=True)
    (model,) = stats["model_stats"]
    assert (model["name"], model["version"]) == (DENOISER, "1")
    assert int(model["inference_count"]) == 6
    assert 1 <= int(model["execution_count"]) <= 2
    assert int(model["inference_stats"]["success"]["count"]) == 2
    assert int(model["inference_stats"]["compute_infer"]["ns"]) > 0
    everything = await aio_client.get_inference_statistics(as_json=True)
    assert {m["name"] for m in everything["model_stats"]} >= {DENOISER, CLASSIFIER}


async def test_typed_contents_get_typed_outputs(address, model_repository) -> None:
    """Triton's rule: no raw inputs, no raw outputs. tritonclient always sends raw, so use the bare stub."""
    images = random_images(2, seed=25)
    tensor = service_pb2.ModelInferRequest.InferInputTensor(name="image", datatype="UINT8", shape=images.shape)
    tensor.contents.uint_contents.extend(images.ravel().tolist())
    request = service_pb2.ModelInferRequest(model_name=CLASSIFIER, model_version="1", inputs=[tensor])
    async with grpc.aio.insecure_channel(address) as channel:
        response = await service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
    assert not response.raw_output_contents
    (output,) = response.outputs
    assert (output.name, output.datatype, list(output.shape)) == (OUTPUT_PROBABILITIES, "FP32", [2, 3])
    expected = reference(model_repository, CLASSIFIER, images, OUTPUT_PROBABILITIES)
    np.testing.assert_allclose(np.array(output.contents.fp32_contents).reshape(2, 3), expected, rtol=1e-5)


async def test_repository_index_unload_and_load(address, aio_client) -> None:
    index = await aio_client.get_model_repository_index(as_json=True)
    assert {(m["name"], m["version"], m["state"]) for m in index["models"]} >= {(CLASSIFIER, "1", "READY")}
    await aio_client.unload_model(DENOISER)
    assert not await aio_client.is_model_ready(DENOISER)
    ready_only = service_pb2.RepositoryIndexRequest(ready=True)
    async with grpc.aio.insecure_channel(address) as channel:
        listed = await service_pb2_grpc.GRPCInferenceServiceStub(channel).RepositoryIndex(ready_only)
    assert DENOISER not in {m.name for m in listed.models}
    await aio_client.load_model(DENOISER)
    assert await aio_client.is_model_ready(DENOISER)


async def test_stream_infer_answers_every_request_and_reports_errors_in_band(address, model_repository) -> None:
    images = random_images(4, seed=26)

    def stream() -> list[tuple[object, object]]:
        answers: queue.Queue = queue.Queue()
        client = triton.InferenceServerClient(address)
        try:
            client.start_stream(callback=lambda result, error: answers.put((result, error)))
            for i in range(len(images)):
                client.async_stream_infer(CLASSIFIER, [uint8_input(images[i : i + 1])], request_id=str(i))
            client.async_stream_infer("no-such-model", [uint8_input(images[:1])], request_id="bad")
            collected = [answers.get(timeout=10) for _ in range(len(images) + 1)]
            client.stop_stream()
            return collected
        finally:
            client.close()

    answers = await asyncio.to_thread(stream)
    expected = reference(model_repository, CLASSIFIER, images, OUTPUT_PROBABILITIES)
    good = {r.get_response().id: r for r, e in answers if e is None}
    errors = [e for _, e in answers if e is not None]
    assert sorted(good) == ["0", "1", "2", "3"]
    for i, probabilities in enumerate(expected):
        np.testing.assert_allclose(good[str(i)].as_numpy(OUTPUT_PROBABILITIES)[0], probabilities, rtol=1e-5)
    assert len(errors) == 1 and "no-such-model" in str(errors[0])


async def test_unknown_model_is_not_found_for_the_sync_client(address) -> None:
    def infer() -> None:
        client = triton.InferenceServerClient(address)
        try:
            client.infer("no-such-model", [uint8_input(random_images(1))])
        finally:
            client.close()

    with pytest.raises(InferenceServerException) as caught:
        await asyncio.to_thread(infer)
    assert caught.value.status() == "StatusCode.NOT_FOUND"
