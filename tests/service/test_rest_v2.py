"""KServe V2 over HTTP with Triton's own clients (tritonclient.http sync and aio), unchanged.

The sync client blocks, so its calls run in a thread while the server runs on the test's event loop.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
import tritonclient.http.aio as triton_aio

from pixelserve.modelspec import OUTPUT_ERROR, OUTPUT_LATENT, OUTPUT_PROBABILITIES, OUTPUT_RECONSTRUCTION
from tests.service.models import AUTOENCODER, CLASSIFIER, DENOISER, LABELS, encode_image, random_images
from tests.service.rest_support import reference, rest_server


@pytest.fixture
async def url(core, settings, metrics) -> AsyncIterator[str]:
    async with rest_server(core, settings, metrics) as base:
        yield base


@pytest.fixture
def sync_client(url) -> triton.InferenceServerClient:
    client = triton.InferenceServerClient(url.removeprefix("http://"))
    yield client
    client.close()


@pytest.fixture
async def aio_client(url) -> AsyncIterator[triton_aio.InferenceServerClient]:
    client = triton_aio.InferenceServerClient(url.removeprefix("http://"))
    yield client
    await client.close()


def uint8_input(images: np.ndarray, *, binary: bool = True) -> triton.InferInput:
    tensor = triton.InferInput("image", list(images.shape), "UINT8")
    tensor.set_data_from_numpy(images, binary_data=binary)
    return tensor


def png_input(images: np.ndarray, *, binary: bool = True) -> triton.InferInput:
    """Encoded PNG files as BYTES: raw bytes in binary, base64 strings in JSON."""
    pngs = [encode_image(i) for i in images]
    elements = pngs if binary else [base64.b64encode(p) for p in pngs]
    tensor = triton.InferInput("image", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array(elements, dtype=object), binary_data=binary)
    return tensor


def expected_classes(probabilities: np.ndarray, k: int) -> list[list[str]]:
    rows = []
    for row in probabilities:
        order = np.argsort(-row, kind="stable")[:k]
        rows.append([f"{row[i]:f}:{i}:{LABELS[i]}" for i in order])
    return rows


async def test_server_metadata_liveness_and_readiness(aio_client, sync_client) -> None:
    metadata = await aio_client.get_server_metadata()
    assert metadata["name"] == "pixelserve"
    assert {"binary_tensor_data", "classification", "model_repository", "statistics"} <= set(metadata["extensions"])
    assert await aio_client.is_server_live() and await aio_client.is_server_ready()
    assert await asyncio.to_thread(sync_client.is_server_ready)
    assert await aio_client.is_model_ready(CLASSIFIER)
    assert await aio_client.is_model_ready(CLASSIFIER, "1")
    assert not await aio_client.is_model_ready("no-such-model")


async def test_model_metadata_and_config_describe_the_graph(aio_client) -> None:
    metadata = await aio_client.get_model_metadata(CLASSIFIER, "1")
    assert metadata["name"] == CLASSIFIER and metadata["versions"] == ["1"]
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [{"name": "image", "datatype": "UINT8", "shape": [-1, 8, 8, 1]}]
    assert metadata["outputs"] == [{"name": OUTPUT_PROBABILITIES, "datatype": "FP32", "shape": [-1, 3]}]

    config = await aio_client.get_model_config(AUTOENCODER)
    assert (config["name"], config["platform"], config["backend"]) == (AUTOENCODER, "onnxruntime_onnx", "onnxruntime")
    assert config["max_batch_size"] == 8
    assert config["input"] == [{"name": "image", "data_type": "TYPE_UINT8", "dims": [8, 8, 1], "format": "FORMAT_NHWC"}]
    outputs = {o["name"]: o for o in config["output"]}
    assert outputs[OUTPUT_RECONSTRUCTION]["dims"] == [8, 8, 1]
    assert outputs[OUTPUT_LATENT] == {"name": OUTPUT_LATENT, "data_type": "TYPE_FP32", "dims": [4]}
    assert outputs[OUTPUT_ERROR]["reshape"] == {"shape": []}
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 2000


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
async def test_sync_client_uint8_inference_matches_onnxruntime(sync_client, model_repository, binary) -> None:
    images = random_images(3, seed=21)
    outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in (OUTPUT_RECONSTRUCTION, OUTPUT_ERROR)]
    result = await asyncio.to_thread(
        sync_client.infer, AUTOENCODER, [uint8_input(images, binary=binary)], outputs=outputs, request_id="r-1"
    )
    ref = reference(model_repository, AUTOENCODER, images)
    np.testing.assert_allclose(result.as_numpy(OUTPUT_RECONSTRUCTION), ref[OUTPUT_RECONSTRUCTION], rtol=1e-6)
    np.testing.assert_allclose(result.as_numpy(OUTPUT_ERROR), ref[OUTPUT_ERROR], rtol=1e-6)
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == (AUTOENCODER, "1", "r-1")


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
async def test_aio_client_bytes_png_inference_matches_onnxruntime(aio_client, model_repository, binary) -> None:
    images = random_images(4, seed=22)
    result = await aio_client.infer(
        CLASSIFIER,
        [png_input(images, binary=binary)],
        outputs=[triton_aio.InferRequestedOutput(OUTPUT_PROBABILITIES, binary_data=binary)],
    )
    expected = reference(model_repository, CLASSIFIER, images)[OUTPUT_PROBABILITIES]
    np.testing.assert_allclose(result.as_numpy(OUTPUT_PROBABILITIES), expected, rtol=1e-6)


async def test_all_outputs_come_back_binary_when_none_are_named(aio_client, model_repository) -> None:
    images = random_images(2, seed=23)
    result = await aio_client.infer(DENOISER, [uint8_input(images)])
    ref = reference(model_repository, DENOISER, images)
    assert {o["name"] for o in result.get_response()["outputs"]} == {OUTPUT_RECONSTRUCTION, OUTPUT_ERROR}
    assert all("binary_data_size" in o["parameters"] for o in result.get_response()["outputs"])
    np.testing.assert_allclose(result.as_numpy(OUTPUT_RECONSTRUCTION), ref[OUTPUT_RECONSTRUCTION], rtol=1e-6)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
async def test_classification_extension_answers_triton_strings(aio_client, model_repository, binary) -> None:
    images = random_images(3, seed=24)
    output = triton_aio.InferRequestedOutput(OUTPUT_PROBABILITIES, binary_data=binary, class_count=2)
    result = await aio_client.infer(CLASSIFIER, [uint8_input(images, binary=binary)], outputs=[output])
    classes = result.as_numpy(OUTPUT_PROBABILITIES)
    assert classes.shape == (3, 2)
    served = [[c.decode() if isinstance(c, bytes) else c for c in row] for row in classes]
    expected = reference(model_repository, CLASSIFIER, images)[OUTPUT_PROBABILITIES]
    assert served == expected_classes(expected, 2)


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
async def test_compressed_request_body_is_inflated(sync_client, model_repository, algorithm) -> None:
    """(The sync client: tritonclient 2.41's aio client forgets to import gzip.)"""
    images = random_images(2, seed=25)
    result = await asyncio.to_thread(
        sync_client.infer, CLASSIFIER, [uint8_input(images)], request_compression_algorithm=algorithm
    )
    expected = reference(model_repository, CLASSIFIER, images)[OUTPUT_PROBABILITIES]
    np.testing.assert_allclose(result.as_numpy(OUTPUT_PROBABILITIES), expected, rtol=1e-6)


async def test_statistics_count_the_traffic(aio_client, sync_client) -> None:
    images = random_images(5, seed=26)
    for _ in range(3):
        await aio_client.infer(CLASSIFIER, [uint8_input(images)])
    stats = (await aio_client.get_inference_statistics(CLASSIFIER))["model_stats"]
    assert len(stats) == 1
    entry = stats[0]
    assert (entry["name"], entry["version"]) == (CLASSIFIER, "1")
    assert entry["inference_count"] == 15
    assert 1 <= entry["execution_count"] <= 3
    assert entry["inference_stats"]["success"]["count"] == 3
    assert entry["inference_stats"]["compute_infer"]["ns"] > 0
    assert entry["last_inference"] > 0

    def sync_statistics() -> tuple[dict, dict]:
        # One worker thread for both calls: the gevent-based client cannot move between threads.
        return sync_client.get_inference_statistics(), sync_client.get_inference_statistics(CLASSIFIER, "1")

    everything, versioned = await asyncio.to_thread(sync_statistics)
    assert {s["name"] for s in everything["model_stats"]} >= {CLASSIFIER, AUTOENCODER, DENOISER}
    assert versioned["model_stats"][0]["inference_count"] == 15


async def test_repository_index_unload_and_load(aio_client, url) -> None:
    index = await aio_client.get_model_repository_index()
    assert {(m["name"], m["version"], m["state"]) for m in index} >= {(CLASSIFIER, "1", "READY")}
    await aio_client.unload_model(DENOISER)
    assert not await aio_client.is_model_ready(DENOISER)
    async with httpx.AsyncClient(base_url=url) as http:
        refused = await http.post(f"/v2/models/{DENOISER}/infer", json={"inputs": []})
        ready_only = (await http.post("/v2/repository/index", json={"ready": True})).json()
    assert refused.status_code in (400, 503)
    assert DENOISER not in {m["name"] for m in ready_only}
    await aio_client.load_model(DENOISER)
    assert await aio_client.is_model_ready(DENOISER)
