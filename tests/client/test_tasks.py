"""Every call of the blocking client against a real server, over REST and over gRPC: the answers are onnxruntime's
own numbers for the same pixels, with everything the server says (top-k, OOD, anomaly verdicts, preprocessing)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from pixelserve.client import AsyncClient, Client, InvalidInput, ModelNotFound
from tests.client.conftest import API_KEY, address
from tests.service.models import (
    AUTOENCODER,
    CLASSIFIER,
    CLASSIFIER_RGB,
    DENOISER,
    LABELS,
    encode_image,
    random_images,
)
from tests.service.rest_support import reference


def _exactness(url: str) -> float:
    """Output images are exact over gRPC and 8-bit PNG over REST."""
    return 1e-6 if url.startswith("grpc") else 0.5 / 255 + 1e-6


def test_classify_answers_top_k_with_ood_scores(client: Client, repository_template: Path) -> None:
    pixels = random_images(3, seed=11)
    expected = reference(repository_template, CLASSIFIER, pixels)["probabilities"]
    errors = reference(repository_template, AUTOENCODER, pixels)["reconstruction_error"]
    result = client.classify(CLASSIFIER, [encode_image(p) for p in pixels], top_k=2)
    assert (result.model.name, result.model.version) == (CLASSIFIER, 1)
    assert len(result) == 3
    for item, probabilities, error in zip(result, expected, errors, strict=True):
        order = np.argsort(-probabilities)[:2]
        assert [s.index for s in item.top] == order.tolist()
        assert [s.label for s in item.top] == [LABELS[i] for i in order]
        assert [s.probability for s in item.top] == pytest.approx(probabilities[order].tolist(), abs=1e-6)
        assert item.label == LABELS[order[0]] and item.probability == item.top[0].probability
        assert item.ood_score == pytest.approx(float(error), rel=1e-5)
        assert item.ood_threshold is not None and item.is_ood == (item.ood_score > item.ood_threshold)
        assert item.anomaly_score is not None and 0 <= item.anomaly_score <= 1
    assert result.prepared is not None and (result.prepared.resize, result.prepared.normalize) == ("stretch", "none")


def test_classify_defaults_to_five_labels_and_a_model_without_a_pair_has_no_ood(client: Client) -> None:
    item = client.classify(CLASSIFIER_RGB, random_images(1, channels=3, seed=2)[0]).one
    assert len(item.top) == len(LABELS)  # the server's default (5) capped at the classes there are
    assert (item.ood_score, item.is_ood, item.anomaly_score) == (None, None, None)


def test_denoise_returns_arrays_pngs_and_errors(client: Client, url: str, repository_template: Path) -> None:
    pixels = random_images(2, seed=12)
    expected = reference(repository_template, DENOISER, pixels)
    result = client.denoise(DENOISER, pixels)
    assert result.model.name == DENOISER
    for item, image, error in zip(result, expected["reconstruction"], expected["reconstruction_error"], strict=True):
        assert item.image.dtype == np.float32 and item.image.shape == (8, 8, 1)
        assert np.abs(item.image - image).max() <= _exactness(url)
        assert item.error == pytest.approx(float(error), rel=1e-5)
        assert item.png.startswith(b"\x89PNG")
        assert (item.threshold, item.is_anomaly) == (None, None)  # a denoiser carries no anomaly threshold


def test_reconstruct_carries_the_anomaly_verdict(client: Client, url: str, repository_template: Path) -> None:
    pixels = random_images(4, seed=13)
    expected = reference(repository_template, AUTOENCODER, pixels)
    result = client.reconstruct(AUTOENCODER, pixels)
    for item, image, error in zip(result, expected["reconstruction"], expected["reconstruction_error"], strict=True):
        assert np.abs(item.image - image).max() <= _exactness(url)
        assert item.error == pytest.approx(float(error), rel=1e-5)
        assert item.threshold is not None and item.is_anomaly == (item.error > item.threshold)
        assert item.anomaly_score is not None and (item.anomaly_score > 0.5) == item.is_anomaly


def test_encode_returns_latent_vectors(client: Client, repository_template: Path) -> None:
    pixels = random_images(2, seed=14)
    expected = reference(repository_template, AUTOENCODER, pixels)["latent"]
    result = client.encode(AUTOENCODER, pixels)
    for item, latent in zip(result, expected, strict=True):
        assert item.latent.dtype == np.float32
        np.testing.assert_allclose(item.latent, latent, rtol=1e-5, atol=1e-6)


def test_infer_returns_every_raw_output_exactly(client: Client, repository_template: Path) -> None:
    pixels = random_images(3, seed=15)
    expected = reference(repository_template, AUTOENCODER, pixels)
    result = client.infer(AUTOENCODER, [encode_image(p) for p in pixels])
    assert result.model.name == AUTOENCODER and set(result.outputs) == set(expected)
    for name, values in expected.items():
        np.testing.assert_array_equal(result.outputs[name], values)
    only = client.infer(CLASSIFIER, pixels, outputs=["probabilities"], tensors=True)
    assert list(only.outputs) == ["probabilities"]


def test_preprocessing_overrides_and_the_prepared_inputs_come_back(client: Client) -> None:
    wide = np.random.default_rng(3).integers(0, 256, size=(8, 16), dtype=np.uint8)  # twice the model's width
    result = client.classify(CLASSIFIER, wide, resize="letterbox", return_input=True)
    assert result.prepared is not None
    assert (result.prepared.resize, result.prepared.normalize) == ("letterbox", "none")
    (seen,) = result.prepared.input_arrays()
    assert seen.shape == (8, 8, 1) and seen.dtype == np.uint8
    stretched = client.classify(CLASSIFIER, wide, return_input=True).prepared
    assert stretched is not None and stretched.resize == "stretch"  # the model's own
    assert not np.array_equal(stretched.input_arrays()[0], seen)


def test_tensors_skip_decoding_over_grpc_and_are_refused_over_rest(client: Client, url: str) -> None:
    pixels = random_images(2, seed=16)
    if url.startswith("http"):
        with pytest.raises(ValueError, match="tensors=True needs gRPC"):
            client.classify(CLASSIFIER, pixels, tensors=True)
        return
    as_tensor = client.classify(CLASSIFIER, pixels, tensors=True)
    as_png = client.classify(CLASSIFIER, pixels)
    assert as_tensor.prepared is None  # tensors are taken as prepared
    assert [i.top for i in as_tensor] == [i.top for i in as_png]


def test_models_metadata_and_health(client: Client) -> None:
    models = {m.name: m for m in client.models()}
    assert set(models) == {CLASSIFIER, CLASSIFIER_RGB, AUTOENCODER, DENOISER}
    entry = models[AUTOENCODER]
    assert entry.state == "ready" and [(v.version, v.state) for v in entry.versions] == [(1, "ready")]
    assert (entry.task, entry.provider) == ("reconstruct", "CPUExecutionProvider")

    info = client.model(CLASSIFIER)
    assert (info.name, info.version, info.versions, info.task, info.state) == (CLASSIFIER, 1, [1], "classify", "ready")
    assert info.provider == "CPUExecutionProvider" and info.labels == LABELS and info.ood_model == AUTOENCODER
    assert [(t.name, t.dtype, t.shape) for t in info.inputs] == [("image", "uint8", [-1, 8, 8, 1])]
    assert info.outputs[0].name == "probabilities"
    assert (info.preprocessing.color_mode, info.preprocessing.height, info.preprocessing.width) == ("grayscale", 8, 8)
    assert (info.preprocessing.resize, info.preprocessing.normalize) == ("stretch", "none")
    autoencoder = client.model(AUTOENCODER, version=1)
    assert autoencoder.anomaly is not None and autoencoder.anomaly.percentile == 95.0
    assert info.spec is not None and info.spec["name"] == CLASSIFIER and info.spec["labels"] == LABELS

    assert client.health().live and client.health().ready
    assert client.health(CLASSIFIER).ready and client.health(CLASSIFIER, version=1).ready


def test_the_same_answers_over_both_transports(served) -> None:

    pixels = random_images(2, seed=17)
    answers = []
    for transport in ("rest", "grpc"):
        with Client(address(served, transport), api_key=API_KEY) as client:
            answers.append(
                (
                    client.classify(CLASSIFIER, pixels, top_k=3).results,
                    [r.error for r in client.reconstruct(AUTOENCODER, pixels)],
                    client.model(AUTOENCODER),  # model.json included (a Struct over gRPC, its numbers doubles)
                    client.models(),
                )
            )
    assert answers[0] == answers[1]


def test_unknown_models_and_bad_images_raise(client: Client) -> None:
    with pytest.raises(ModelNotFound):
        client.classify("no-such-model", random_images(1)[0])
    with pytest.raises(ModelNotFound):
        client.model(CLASSIFIER, version=7)
    with pytest.raises(InvalidInput, match="unsupported image format"):
        client.classify(CLASSIFIER, b"this is not an image")
    with pytest.raises(InvalidInput):
        client.encode(DENOISER, random_images(1)[0])  # a denoiser has no latent output


def test_an_async_client_made_outside_the_event_loop_works_inside_it(url: str) -> None:
    """A grpc.aio channel belongs to the loop it was made in: the client opens it on the first call."""
    client = AsyncClient(url, api_key=API_KEY)

    async def use() -> int:
        async with client:
            return len(await client.classify(CLASSIFIER, random_images(2)))

    assert asyncio.run(use()) == 2
