"""The task API (/v1) over a real uvicorn server with httpx, checked against in-process onnxruntime."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest
from PIL import Image

from pixelserve.modelspec import OUTPUT_ERROR, OUTPUT_LATENT, OUTPUT_PROBABILITIES, OUTPUT_RECONSTRUCTION
from tests.service.models import (
    AUTOENCODER,
    CLASSIFIER,
    CLASSIFIER_RGB,
    DENOISER,
    LABELS,
    encode_image,
    random_images,
    write_classifier,
)
from tests.service.rest_support import reference, rest_server


@pytest.fixture
async def client(core, settings, metrics) -> AsyncIterator[httpx.AsyncClient]:
    async with rest_server(core, settings, metrics) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        yield http


def decoded(data: bytes) -> np.ndarray:
    """What the server sees from an upload (JPEG is lossy): HWC uint8."""
    pixels = np.asarray(Image.open(io.BytesIO(data)))
    return pixels[..., None] if pixels.ndim == 2 else pixels


def png_pixels(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return decoded(data)


def expected_png_pixels(reconstruction: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(reconstruction, 0, 1) * 255).astype(np.uint8)


def assert_classification(results: list[dict], probabilities: np.ndarray, k: int) -> None:
    assert len(results) == len(probabilities)
    for result, row in zip(results, probabilities, strict=True):
        order = np.argsort(-row, kind="stable")[:k]
        assert [s["index"] for s in result["top"]] == order.tolist()
        assert [s["label"] for s in result["top"]] == [LABELS[i] for i in order]
        np.testing.assert_allclose([s["probability"] for s in result["top"]], row[order], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("image_format", ["PNG", "JPEG"])
async def test_classify_raw_image_body_matches_onnxruntime(client, model_repository, image_format) -> None:
    data = encode_image(random_images(1, seed=3)[0], image_format)
    response = await client.post(
        f"/v1/models/{CLASSIFIER}:classify",
        params={"top_k": 2},
        content=data,
        headers={"Content-Type": f"image/{image_format.lower()}"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == {"name": CLASSIFIER, "version": 1}
    pixels = decoded(data)[None]
    assert_classification(body["results"], reference(model_repository, CLASSIFIER, pixels)[OUTPUT_PROBABILITIES], 2)
    ood = body["results"][0]
    assert ood["ood_score"] == pytest.approx(float(reference(model_repository, AUTOENCODER, pixels)[OUTPUT_ERROR][0]))
    assert ood["is_ood"] == (ood["ood_score"] > ood["ood_threshold"])


async def test_classify_multipart_batch_answers_each_file_in_order(client, model_repository) -> None:
    images = random_images(4, channels=3, seed=11)
    files = [("files", (f"{i}.png", encode_image(img), "image/png")) for i, img in enumerate(images)]
    response = await client.post(f"/v1/models/{CLASSIFIER_RGB}:classify", files=files, data={"top_k": "3"})
    assert response.status_code == 200, response.text
    expected = reference(model_repository, CLASSIFIER_RGB, images)[OUTPUT_PROBABILITIES]
    assert_classification(response.json()["results"], expected, 3)


async def test_classify_base64_json_batch_with_top_k(client, model_repository) -> None:
    images = random_images(3, seed=12)
    payload = {"images": [base64.b64encode(encode_image(i)).decode() for i in images], "top_k": 1}
    payload["images"][1] = "data:image/png;base64," + payload["images"][1]  # a browser data URL is fine too
    response = await client.post(f"/v1/models/{CLASSIFIER}:classify", json=payload)
    assert response.status_code == 200, response.text
    expected = reference(model_repository, CLASSIFIER, images)[OUTPUT_PROBABILITIES]
    assert_classification(response.json()["results"], expected, 1)


async def test_reconstruct_returns_png_error_and_anomaly_verdict(client, model_repository) -> None:
    images = random_images(2, seed=13)
    files = [("image", (f"{i}.png", encode_image(img), "image/png")) for i, img in enumerate(images)]
    response = await client.post(f"/v1/models/{AUTOENCODER}:reconstruct", files=files)
    assert response.status_code == 200, response.text
    ref = reference(model_repository, AUTOENCODER, images)
    results = response.json()["results"]
    for result, recon, error in zip(results, ref[OUTPUT_RECONSTRUCTION], ref[OUTPUT_ERROR], strict=True):
        assert result["error"] == pytest.approx(float(error), rel=1e-5)
        assert result["is_anomaly"] == (result["error"] > result["threshold"])
        served = png_pixels(base64.b64decode(result["image"]))
        assert np.abs(served.astype(int) - expected_png_pixels(recon)).max() <= 1


async def test_denoise_one_raw_image_answers_a_png(client, model_repository) -> None:
    image = random_images(1, seed=14)
    response = await client.post(
        f"/v1/models/{DENOISER}:denoise", content=encode_image(image[0]), headers={"Content-Type": "image/png"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-model-version"] == "1"
    ref = reference(model_repository, DENOISER, image)
    served = png_pixels(response.content)
    assert served.shape == (8, 8, 1)
    assert np.abs(served.astype(int) - expected_png_pixels(ref[OUTPUT_RECONSTRUCTION][0])).max() <= 1
    assert float(response.headers["x-reconstruction-error"]) == pytest.approx(float(ref[OUTPUT_ERROR][0]), rel=1e-5)


async def test_denoise_answers_json_for_a_batch_or_when_json_is_asked(client, model_repository) -> None:
    images = random_images(2, seed=15)
    batch = await client.post(
        f"/v1/models/{DENOISER}:denoise", json={"images": [base64.b64encode(encode_image(i)).decode() for i in images]}
    )
    single = await client.post(
        f"/v1/models/{DENOISER}:denoise",
        content=encode_image(images[0]),
        headers={"Content-Type": "image/png", "Accept": "application/json"},
    )
    assert batch.headers["content-type"] == single.headers["content-type"] == "application/json"
    ref = reference(model_repository, DENOISER, images)[OUTPUT_RECONSTRUCTION]
    for result, recon in zip(batch.json()["results"], ref, strict=True):
        served = png_pixels(base64.b64decode(result["image"]))
        assert np.abs(served.astype(int) - expected_png_pixels(recon)).max() <= 1
    assert single.json()["results"][0]["image"] == batch.json()["results"][0]["image"]


async def test_encode_returns_the_latent_vector(client, model_repository) -> None:
    images = random_images(2, seed=16)
    response = await client.post(
        f"/v1/models/{AUTOENCODER}:encode", files=[("f", (f"{i}.png", encode_image(im))) for i, im in enumerate(images)]
    )
    assert response.status_code == 200, response.text
    latents = np.array([r["latent"] for r in response.json()["results"]], dtype=np.float32)
    np.testing.assert_allclose(latents, reference(model_repository, AUTOENCODER, images)[OUTPUT_LATENT], rtol=1e-5)


async def test_versioned_path_serves_that_version_and_names_the_others(client, core, model_repository) -> None:
    write_classifier(model_repository, version=2, seed=42)
    await core.load(CLASSIFIER)  # the policy serves the newest version only
    image = encode_image(random_images(1, seed=17)[0])
    latest = await client.post(f"/v1/models/{CLASSIFIER}:classify", content=image)
    explicit = await client.post(f"/v1/models/{CLASSIFIER}/versions/2:classify", content=image)
    retired = await client.post(f"/v1/models/{CLASSIFIER}/versions/1:classify", content=image)
    assert latest.json() == explicit.json()
    assert explicit.json()["model"] == {"name": CLASSIFIER, "version": 2}
    expected = reference(model_repository, CLASSIFIER, decoded(image)[None], 2)[OUTPUT_PROBABILITIES]
    assert_classification(explicit.json()["results"], expected, 3)
    assert retired.status_code == 503
    assert retired.json()["error"]["code"] == "UNAVAILABLE"
    assert "version 1" in retired.json()["error"]["message"]


async def test_model_index_and_metadata_show_task_provider_and_spec(client) -> None:
    index = (await client.get("/v1/models")).json()["models"]
    by_name = {m["name"]: m for m in index}
    assert set(by_name) == {CLASSIFIER, CLASSIFIER_RGB, AUTOENCODER, DENOISER}
    assert by_name[DENOISER]["task"] == "denoise"
    assert by_name[CLASSIFIER]["provider"] == "CPUExecutionProvider"
    assert by_name[CLASSIFIER]["versions"] == [{"version": 1, "state": "ready", "reason": ""}]

    metadata = (await client.get(f"/v1/models/{AUTOENCODER}")).json()
    assert (metadata["name"], metadata["version"], metadata["task"]) == (AUTOENCODER, 1, "reconstruct")
    assert metadata["versions"] == [1]
    assert metadata["state"] == "ready" and metadata["provider"] == "CPUExecutionProvider"
    assert metadata["spec"]["anomaly"]["value"] > 0
    assert (await client.get(f"/v1/models/{AUTOENCODER}/versions/1")).json() == metadata


async def test_openapi_docs_are_served(client) -> None:
    assert (await client.get("/docs")).status_code == 200
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert "/v1/models/{name}:classify" in paths and "/v2/models/{name}/infer" in paths


async def test_cors_preflight_allows_a_configured_origin(core, settings, metrics) -> None:
    origin = "https://playground.example"
    async with rest_server(core, settings, metrics, cors_origins=[origin]) as url, httpx.AsyncClient() as http:
        preflight = await http.options(
            f"{url}/v1/models/{CLASSIFIER}:classify",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        )
        other = await http.options(
            f"{url}/v1/models/{CLASSIFIER}:classify",
            headers={"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST"},
        )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == origin
    assert "access-control-allow-origin" not in other.headers
