"""Every task of the core against in-process onnxruntime results on the same files."""

from __future__ import annotations

import numpy as np
import pytest

from pixelserve import anomaly
from pixelserve.modelspec import SPEC_FILE, ModelSpec
from pixelserve.service.core import images
from pixelserve.service.core.core import InferenceCore
from pixelserve.service.core.types import ImageInputs, ModelRef
from pixelserve.service.errors import InvalidInput, ShuttingDown, UnsupportedTask
from tests.service.models import (
    AUTOENCODER,
    CLASSIFIER,
    CLASSIFIER_RGB,
    DENOISER,
    encode_image,
    random_images,
    reference_session,
)

X = random_images(5, seed=7)


def reference(core: InferenceCore, name: str, x: np.ndarray) -> dict[str, np.ndarray]:
    session = reference_session(core.settings.model_repository, name)
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, {"image": x}), strict=True))


def spec_of(core: InferenceCore, name: str) -> ModelSpec:
    return ModelSpec.load(core.settings.model_repository / name / "1" / SPEC_FILE)


async def test_classify_matches_onnxruntime_with_top_k_sorted(core: InferenceCore) -> None:
    result = await core.classify(ModelRef(CLASSIFIER), ImageInputs(tensor=X), top_k=2)
    probabilities = reference(core, CLASSIFIER, X)["probabilities"]
    assert (result.model.name, result.model.version) == (CLASSIFIER, 1)
    assert len(result.items) == len(X)
    for item, row in zip(result.items, probabilities, strict=True):
        assert [s.index for s in item.top] == list(np.argsort(-row)[:2])
        assert [s.label for s in item.top] == [spec_of(core, CLASSIFIER).labels[s.index] for s in item.top]
        np.testing.assert_allclose([s.probability for s in item.top], np.sort(row)[::-1][:2], rtol=1e-5)


async def test_top_k_is_clamped_to_the_label_count_and_must_be_positive(core: InferenceCore) -> None:
    result = await core.classify(ModelRef(CLASSIFIER), ImageInputs(tensor=X[:1]), top_k=50)
    assert len(result.items[0].top) == 3
    with pytest.raises(InvalidInput, match="top_k"):
        await core.classify(ModelRef(CLASSIFIER), ImageInputs(tensor=X[:1]), top_k=0)


async def test_classify_scores_ood_with_the_paired_autoencoder(core: InferenceCore) -> None:
    """The score is the autoencoder's reconstruction error, under pixelserve.anomaly's rule: a content-less
    (blank) image scores the largest error whatever the autoencoder makes of it."""
    x = np.concatenate([np.zeros((2, 8, 8, 1), dtype=np.uint8), X])
    result = await core.classify(ModelRef(CLASSIFIER), ImageInputs(tensor=x))
    errors = np.asarray(reference(core, AUTOENCODER, x)["reconstruction_error"], dtype=np.float64)
    errors[:2] = anomaly.CONTENTLESS_ERROR
    threshold = spec_of(core, AUTOENCODER).anomaly.value
    np.testing.assert_allclose([item.ood_score for item in result.items], errors, rtol=1e-5)
    assert {item.ood_threshold for item in result.items} == {threshold}
    assert [item.is_ood for item in result.items] == list(errors > threshold)
    assert {True, False} <= {item.is_ood for item in result.items}
    np.testing.assert_allclose([i.anomaly_score for i in result.items], errors / (errors + threshold), rtol=1e-6)
    assert all(item.is_ood == (item.anomaly_score > 0.5) for item in result.items)


async def test_classify_without_its_ood_partner_still_answers(core: InferenceCore) -> None:
    await core.unload(AUTOENCODER)
    result = await core.classify(ModelRef(CLASSIFIER), ImageInputs(tensor=X))
    assert all(item.ood_score is None and item.is_ood is None for item in result.items)
    rgb = await core.classify(ModelRef(CLASSIFIER_RGB), ImageInputs(tensor=random_images(2, channels=3)))
    assert rgb.items[0].ood_score is None  # no pairing at all


async def test_encoded_images_and_tensors_give_the_same_answer(core: InferenceCore) -> None:
    from_tensor = await core.classify(ModelRef(CLASSIFIER), ImageInputs(tensor=X))
    from_png = await core.classify(ModelRef(CLASSIFIER), ImageInputs(encoded=[encode_image(x) for x in X]))
    assert from_png.items == from_tensor.items


async def test_rgb_model_accepts_a_grayscale_image(core: InferenceCore) -> None:
    gray = X[:2]
    result = await core.classify(ModelRef(CLASSIFIER_RGB), ImageInputs(encoded=[encode_image(x) for x in gray]))
    probabilities = reference(core, CLASSIFIER_RGB, np.repeat(gray, 3, axis=-1))["probabilities"]
    for item, row in zip(result.items, probabilities, strict=True):
        np.testing.assert_allclose([s.probability for s in item.top], np.sort(row)[::-1], rtol=1e-5)


async def test_large_upload_is_decoded_off_the_event_loop_with_the_same_result(core: InferenceCore) -> None:
    big = np.random.default_rng(3).integers(0, 256, size=(700, 700), dtype=np.uint8)
    data = encode_image(big)
    assert len(data) > 256 * 1024
    result = await core.classify(ModelRef(CLASSIFIER), ImageInputs(encoded=[data]))
    batch = images.prepare(ImageInputs(encoded=[data]), spec_of(core, CLASSIFIER).preprocessing, core.limits)
    row = reference(core, CLASSIFIER, batch)["probabilities"][0]
    np.testing.assert_allclose([s.probability for s in result.items[0].top], np.sort(row)[::-1], rtol=1e-5)


async def test_denoise_returns_the_graph_reconstruction_and_error(core: InferenceCore) -> None:
    result = await core.denoise(ModelRef(DENOISER), ImageInputs(tensor=X))
    expected = reference(core, DENOISER, X)
    for i, item in enumerate(result.items):
        assert item.image.shape == (8, 8, 1) and item.image.dtype == np.float32
        np.testing.assert_allclose(item.image, expected["reconstruction"][i], rtol=1e-5, atol=1e-6)
        assert item.error == pytest.approx(float(expected["reconstruction_error"][i]), rel=1e-5)
        assert item.threshold is None and item.is_anomaly is None


async def test_reconstruct_flags_anomalies_with_the_calibrated_threshold(core: InferenceCore) -> None:
    x = np.concatenate([np.zeros((1, 8, 8, 1), dtype=np.uint8), X])
    result = await core.reconstruct(ModelRef(AUTOENCODER), ImageInputs(tensor=x))
    expected = reference(core, AUTOENCODER, x)
    threshold = spec_of(core, AUTOENCODER).anomaly.value
    np.testing.assert_allclose([r.error for r in result.items], expected["reconstruction_error"], rtol=1e-5)
    np.testing.assert_allclose(np.stack([r.image for r in result.items]), expected["reconstruction"], atol=1e-6)
    assert [r.is_anomaly for r in result.items] == list(expected["reconstruction_error"] > threshold)
    assert all(r.threshold == threshold for r in result.items)


async def test_encode_returns_one_latent_row_per_image(core: InferenceCore) -> None:
    result = await core.encode(ModelRef(AUTOENCODER), ImageInputs(tensor=X))
    np.testing.assert_allclose(np.stack([e.latent for e in result.items]), reference(core, AUTOENCODER, X)["latent"])


async def test_infer_returns_raw_outputs_optionally_filtered(core: InferenceCore) -> None:
    expected = reference(core, AUTOENCODER, X)
    everything = await core.infer(ModelRef(AUTOENCODER), ImageInputs(tensor=X))
    assert set(everything.outputs) == {"latent", "reconstruction", "reconstruction_error"}
    for name, value in everything.outputs.items():
        np.testing.assert_allclose(value, expected[name], rtol=1e-5, atol=1e-6)
    latent_only = await core.infer(ModelRef(AUTOENCODER), ImageInputs(tensor=X), ["latent"])
    assert list(latent_only.outputs) == ["latent"]
    with pytest.raises(InvalidInput, match=r"unknown output\(s\) \['logits'\]"):
        await core.infer(ModelRef(AUTOENCODER), ImageInputs(tensor=X), ["latent", "logits"])
    assert everything.labels is None


async def test_infer_carries_the_served_versions_labels(core: InferenceCore) -> None:
    result = await core.infer(ModelRef(CLASSIFIER), ImageInputs(tensor=X))
    assert result.labels == core.model_info(ModelRef(CLASSIFIER)).spec.labels


@pytest.mark.parametrize(
    ("call", "model", "message"),
    [
        ("classify", DENOISER, "is a denoise model and cannot classify"),
        ("denoise", CLASSIFIER, "is a classify model and cannot denoise"),
        ("reconstruct", DENOISER, "is a denoise model and cannot reconstruct"),
        ("encode", DENOISER, "has no 'latent' output"),
        ("encode", CLASSIFIER, "has no 'latent' output"),
    ],
)
async def test_a_task_the_model_cannot_do_is_unsupported(core: InferenceCore, call: str, model: str, message: str):
    with pytest.raises(UnsupportedTask, match=message):
        await getattr(core, call)(ModelRef(model), ImageInputs(tensor=X))


async def test_statistics_count_successes_failures_images_and_batches(core: InferenceCore) -> None:
    await core.classify(ModelRef(CLASSIFIER), ImageInputs(tensor=X))
    await core.classify(ModelRef(CLASSIFIER), ImageInputs(tensor=X[:2]))
    with pytest.raises(InvalidInput):
        await core.classify(ModelRef(CLASSIFIER), ImageInputs(encoded=[b"garbage"]))
    with pytest.raises(UnsupportedTask):
        await core.denoise(ModelRef(CLASSIFIER), ImageInputs(tensor=X))
    (stats,) = core.model_stats(ModelRef(CLASSIFIER))
    assert (stats.success_count, stats.failure_count) == (2, 2)
    assert stats.inference_count == 7 and 1 <= stats.execution_count <= 2
    assert stats.compute_ns > 0 and stats.queue_ns > 0 and stats.last_inference_ms > 0
    assert [s.name for s in core.model_stats()] == sorted([AUTOENCODER, CLASSIFIER, CLASSIFIER_RGB, DENOISER])


async def test_shutdown_turns_readiness_off_but_serves_until_closed(core: InferenceCore) -> None:
    assert core.is_live() and core.is_ready() and core.is_ready(ModelRef(CLASSIFIER))
    core.begin_shutdown()
    assert not core.is_ready() and core.is_live()
    result = await core.classify(ModelRef(CLASSIFIER), ImageInputs(tensor=X))
    assert len(result.items) == len(X) and core.in_flight == 0
    await core.close()
    assert not core.is_live()
    with pytest.raises(ShuttingDown):
        await core.classify(ModelRef(CLASSIFIER), ImageInputs(tensor=X))
