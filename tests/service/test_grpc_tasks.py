"""Our task API (pixelserve.v1.PixelServe) over a real grpc.aio server, checked against in-process onnxruntime."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from pixelserve.modelspec import OUTPUT_ERROR, OUTPUT_LATENT, OUTPUT_PROBABILITIES, OUTPUT_RECONSTRUCTION
from pixelserve.service.grpc.gen.pixelserve.v1 import pixelserve_pb2 as pb
from pixelserve.service.grpc.gen.pixelserve.v1 import pixelserve_pb2_grpc as pb_grpc
from pixelserve.service.observe.metrics import UNKNOWN_MODEL
from tests.service.grpc_support import grpc_server
from tests.service.models import (
    AUTOENCODER,
    CLASSIFIER,
    CLASSIFIER_RGB,
    DENOISER,
    LABELS,
    encode_image,
    random_images,
    reference_session,
)


@pytest.fixture
async def stub(core, settings, metrics) -> AsyncIterator[pb_grpc.PixelServeStub]:
    async with grpc_server(core, settings, metrics) as address, grpc.aio.insecure_channel(address) as channel:
        yield pb_grpc.PixelServeStub(channel)


def reference(repo: Path, name: str, images: np.ndarray) -> dict[str, np.ndarray]:
    session = reference_session(repo, name)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {"image": images}), strict=True))


def encoded(images: np.ndarray, image_format: str = "PNG") -> pb.ImageBatch:
    return pb.ImageBatch(images=[pb.Image(encoded=encode_image(i, image_format)) for i in images])


def decoded_jpegs(images: np.ndarray) -> np.ndarray:
    """What the server sees from a JPEG upload: the lossy decode, not the original pixels."""
    return np.stack([np.asarray(Image.open(io.BytesIO(encode_image(i, "JPEG"))))[..., None] for i in images])


def assert_top_matches(response: pb.ClassifyResponse, probabilities: np.ndarray, k: int) -> None:
    assert len(response.results) == len(probabilities)
    for result, row in zip(response.results, probabilities, strict=True):
        order = np.argsort(-row, kind="stable")[:k]
        assert [s.index for s in result.top] == order.tolist()
        assert [s.label for s in result.top] == [LABELS[i] for i in order]
        np.testing.assert_allclose([s.probability for s in result.top], row[order], rtol=1e-5, atol=1e-6)


async def test_classify_png_matches_onnxruntime_with_ood_score(stub, model_repository) -> None:
    images = random_images(3)
    response = await stub.Classify(pb.ClassifyRequest(model=CLASSIFIER, inputs=encoded(images), top_k=2))
    assert (response.model.name, response.model.version) == (CLASSIFIER, 1)
    assert_top_matches(response, reference(model_repository, CLASSIFIER, images)[OUTPUT_PROBABILITIES], 2)
    errors = reference(model_repository, AUTOENCODER, images)[OUTPUT_ERROR]
    for result, error in zip(response.results, errors, strict=True):
        assert result.HasField("ood_score")
        assert result.ood_score == pytest.approx(float(error), rel=1e-5)
        assert result.is_ood == (result.ood_score > result.ood_threshold)


async def test_classify_jpeg_matches_onnxruntime_on_the_decoded_pixels(stub, model_repository) -> None:
    images = random_images(2, seed=5)
    response = await stub.Classify(pb.ClassifyRequest(model=CLASSIFIER, inputs=encoded(images, "JPEG"), top_k=3))
    expected = reference(model_repository, CLASSIFIER, decoded_jpegs(images))[OUTPUT_PROBABILITIES]
    assert_top_matches(response, expected, 3)


async def test_classify_accepts_a_batch_tensor_and_per_image_tensors(stub, model_repository) -> None:
    images = random_images(4, channels=3, seed=7)
    expected = reference(model_repository, CLASSIFIER_RGB, images)[OUTPUT_PROBABILITIES]
    batch = pb.Tensor(dtype=pb.Tensor.DATA_TYPE_UINT8, shape=images.shape, data=images.tobytes())
    whole = await stub.Classify(pb.ClassifyRequest(model=CLASSIFIER_RGB, inputs=pb.ImageBatch(batch=batch)))
    assert_top_matches(whole, expected, 3)
    singles = pb.ImageBatch(
        images=[
            pb.Image(tensor=pb.Tensor(dtype=pb.Tensor.DATA_TYPE_FLOAT32, shape=i.shape, data=i.astype("<f4").tobytes()))
            for i in images
        ]
    )
    each = await stub.Classify(pb.ClassifyRequest(model=CLASSIFIER_RGB, version=1, inputs=singles))
    assert_top_matches(each, expected, 3)


async def test_denoise_returns_a_decodable_png_and_the_float_tensor(stub, model_repository) -> None:
    images = random_images(2, seed=3)
    response = await stub.Denoise(pb.DenoiseRequest(model=DENOISER, inputs=encoded(images), return_tensor=True))
    expected = reference(model_repository, DENOISER, images)
    for result, image, error in zip(
        response.results, expected[OUTPUT_RECONSTRUCTION], expected[OUTPUT_ERROR], strict=True
    ):
        png = Image.open(io.BytesIO(result.png))
        assert png.format == "PNG" and png.size == (8, 8) and png.mode == "L"
        pixels = np.asarray(png).astype(np.int16)
        assert np.abs(pixels - np.rint(image[..., 0] * 255)).max() <= 1
        tensor = np.frombuffer(result.tensor.data, dtype="<f4").reshape(result.tensor.shape)
        np.testing.assert_allclose(tensor, image, atol=1e-6)
        assert result.error == pytest.approx(float(error), rel=1e-5)
        assert not result.HasField("threshold")  # a denoiser carries no anomaly threshold


async def test_reconstruct_reports_error_and_anomaly_verdict(stub, model_repository) -> None:
    images = random_images(3, seed=11)
    response = await stub.Reconstruct(pb.ReconstructRequest(model=AUTOENCODER, inputs=encoded(images)))
    errors = reference(model_repository, AUTOENCODER, images)[OUTPUT_ERROR]
    for result, error in zip(response.results, errors, strict=True):
        assert result.error == pytest.approx(float(error), rel=1e-5)
        assert result.HasField("threshold") and result.is_anomaly == (result.error > result.threshold)
        assert not result.HasField("tensor")
        assert Image.open(io.BytesIO(result.png)).size == (8, 8)


async def test_encode_returns_the_latent_vectors(stub, model_repository) -> None:
    images = random_images(2, seed=13)
    response = await stub.Encode(pb.EncodeRequest(model=AUTOENCODER, inputs=encoded(images)))
    latents = np.array([list(r.latent) for r in response.results], dtype=np.float32)
    np.testing.assert_allclose(latents, reference(model_repository, AUTOENCODER, images)[OUTPUT_LATENT], rtol=1e-5)


async def test_classify_stream_answers_in_order_and_reports_bad_messages_in_band(stub, model_repository) -> None:
    images = random_images(12, seed=17)
    expected = reference(model_repository, CLASSIFIER, images)[OUTPUT_PROBABILITIES]

    def request(i: int) -> pb.ClassifyRequest:
        inputs = pb.ImageBatch(images=[pb.Image(encoded=b"not an image")]) if i == 5 else encoded(images[i : i + 1])
        return pb.ClassifyRequest(model=CLASSIFIER, inputs=inputs, top_k=1, request_id=f"r{i}")

    async def requests() -> AsyncIterator[pb.ClassifyRequest]:
        for i in range(len(images)):
            yield request(i)

    responses = [r async for r in stub.ClassifyStream(requests())]
    assert [r.request_id for r in responses] == [f"r{i}" for i in range(len(images))]
    for i, response in enumerate(responses):
        if i == 5:
            assert response.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
            assert response.error.message and not response.results
        else:
            assert not response.HasField("error")
            assert response.results[0].top[0].index == int(np.argmax(expected[i]))


async def test_list_and_get_model_describe_the_repository(stub) -> None:
    listed = await stub.ListModels(pb.ListModelsRequest())
    assert {(m.name, m.version, m.state) for m in listed.models} == {
        (name, 1, "ready") for name in (CLASSIFIER, CLASSIFIER_RGB, AUTOENCODER, DENOISER)
    }
    model = await stub.GetModel(pb.GetModelRequest(model=CLASSIFIER))
    assert (model.name, model.version, model.task, model.state) == (CLASSIFIER, 1, "classify", "ready")
    assert list(model.labels) == LABELS and list(model.versions) == [1]
    assert model.provider == "CPUExecutionProvider"
    assert model.ood_model == AUTOENCODER
    assert [(t.name, t.dtype, list(t.shape)) for t in model.inputs] == [("image", "uint8", [-1, 8, 8, 1])]
    assert (model.preprocessing.color_mode, model.preprocessing.height) == ("grayscale", 8)
    autoencoder = await stub.GetModel(pb.GetModelRequest(model=AUTOENCODER, version=1))
    assert autoencoder.anomaly.percentile == 95.0 and autoencoder.anomaly.value > 0


async def test_requests_are_counted_by_model_task_protocol_and_code(stub, metrics) -> None:
    def count(model: str, version: str, code: str) -> float:
        labels = {"model": model, "version": version, "task": "classify", "protocol": "grpc", "code": code}
        return metrics.registry.get_sample_value("pixelserve_requests_total", labels) or 0.0

    await stub.Classify(pb.ClassifyRequest(model=CLASSIFIER, inputs=encoded(random_images(1))))
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.Classify(pb.ClassifyRequest(model="no-such-model", inputs=encoded(random_images(1))))
    assert count(CLASSIFIER, "1", "OK") == 1
    assert count(UNKNOWN_MODEL, "", "NOT_FOUND") == 1  # client-chosen names do not become label values
    latency = {"model": CLASSIFIER, "version": "1", "task": "classify", "protocol": "grpc"}
    assert metrics.registry.get_sample_value("pixelserve_request_duration_seconds_count", latency) == 1
