"""Model repository: scanning, version policy, name safety, broken versions and hot reload, through the core."""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import pytest

from pixelserve.modelspec import SPEC_FILE
from pixelserve.service.core.core import InferenceCore
from pixelserve.service.core.types import ImageInputs, ModelRef
from pixelserve.service.errors import ModelNotFound, ModelNotReady
from pixelserve.service.observe.metrics import Metrics
from pixelserve.service.settings import Settings
from pixelserve.service.wiring import build_core
from tests.service.models import (
    CLASSIFIER,
    DENOISER,
    random_images,
    reference_session,
    write_broken_onnx,
    write_classifier,
    write_mismatched_spec,
)

X = random_images(4, seed=42)


def expected_probabilities(repo: Path, version: int, x: np.ndarray = X) -> np.ndarray:
    return reference_session(repo, CLASSIFIER, version).run(None, {"image": x})[0]


async def classify(core: InferenceCore, x: np.ndarray = X, version: int | None = None) -> tuple[int, np.ndarray]:
    """(served version, probabilities in label-index order) for a batch."""
    result = await core.classify(ModelRef(CLASSIFIER, version), ImageInputs(tensor=x), top_k=3)
    rows = np.array([[s.probability for s in sorted(item.top, key=lambda s: s.index)] for item in result.items])
    return result.model.version, rows


async def eventually(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def state_of(core: InferenceCore, name: str, version: int) -> tuple[str, str]:
    for status in core.index():
        if (status.name, status.version) == (name, version):
            return status.state, status.reason
    return "absent", ""


@pytest.fixture
async def reloading_core(settings: Settings, metrics: Metrics) -> AsyncIterator[InferenceCore]:
    core = await build_core(settings.model_copy(update={"hot_reload": True}), metrics)
    yield core
    await core.close()


async def test_newest_version_is_served_by_default(settings: Settings, metrics: Metrics) -> None:
    repo = settings.model_repository
    write_classifier(repo, version=2, seed=7)
    core = await build_core(settings, metrics)
    try:
        version, probabilities = await classify(core)
        assert version == 2
        np.testing.assert_allclose(probabilities, expected_probabilities(repo, 2), rtol=1e-5, atol=1e-6)
        assert not np.allclose(probabilities, expected_probabilities(repo, 1), atol=1e-3)
        assert state_of(core, CLASSIFIER, 1) == ("unavailable", "version 2 is served")
        assert core.model_info(ModelRef(CLASSIFIER)).versions == [1, 2]
        with pytest.raises(ModelNotReady, match="version 1 is unavailable"):
            await classify(core, version=1)
    finally:
        await core.close()


async def test_pinned_version_is_served_even_when_a_newer_one_exists(settings: Settings, metrics: Metrics):
    repo = settings.model_repository
    write_classifier(repo, version=2, seed=7)
    core = await build_core(settings.model_copy(update={"pinned_versions": {CLASSIFIER: 1}}), metrics)
    try:
        version, probabilities = await classify(core)
        assert version == 1
        np.testing.assert_allclose(probabilities, expected_probabilities(repo, 1), rtol=1e-5, atol=1e-6)
        assert state_of(core, CLASSIFIER, 2) == ("unavailable", "pinned to version 1")
    finally:
        await core.close()


async def test_pinned_version_missing_from_disk_leaves_the_model_not_ready(settings: Settings, metrics: Metrics):
    core = await build_core(settings.model_copy(update={"pinned_versions": {CLASSIFIER: 5}}), metrics)
    try:
        with pytest.raises(ModelNotReady, match="pinned to version 5"):
            await classify(core)
        assert not core.is_ready() and not core.is_ready(ModelRef(CLASSIFIER))
        assert core.is_ready(ModelRef(DENOISER))
    finally:
        await core.close()


@pytest.mark.parametrize(
    "name", ["../tiny-classifier", "..", "tiny-classifier/../tiny-classifier", "a/b", "/etc", ".hidden", "", "x\0y"]
)
async def test_path_like_model_names_are_refused_without_touching_the_filesystem(
    core: InferenceCore, name: str
) -> None:
    with pytest.raises(ModelNotFound, match="invalid model name"):
        await core.classify(ModelRef(name), ImageInputs(tensor=X))
    with pytest.raises(ModelNotFound, match="invalid model name"):
        await core.load(name)
    with pytest.raises(ModelNotFound, match="invalid model name"):
        core.model_info(ModelRef(name))


async def test_a_valid_model_outside_the_repository_cannot_be_loaded(core: InferenceCore, tmp_path: Path):
    write_classifier(tmp_path, "outside")  # tmp_path is the repository's parent
    with pytest.raises(ModelNotFound):
        await core.load("outside")
    with pytest.raises(ModelNotFound, match="invalid model name"):
        await core.load("../outside")


async def test_unknown_model_or_version_is_not_found(core: InferenceCore) -> None:
    with pytest.raises(ModelNotFound, match="'nope' is not in the repository"):
        await core.classify(ModelRef("nope"), ImageInputs(tensor=X))
    with pytest.raises(ModelNotFound, match=r"no version 9 \(versions: \[1\]\)"):
        await core.classify(ModelRef(CLASSIFIER, 9), ImageInputs(tensor=X))


@pytest.mark.parametrize(
    ("write_bad_version", "reason"),
    [
        (write_broken_onnx, "onnxruntime cannot load model.onnx"),
        (write_mismatched_spec, r"model.json says shape \[-1, 5\], graph has \['batch', 3\]"),
    ],
)
async def test_broken_newest_version_at_start_is_failed_and_the_previous_one_serves(
    settings: Settings, metrics: Metrics, write_bad_version, reason: str
) -> None:
    write_bad_version(settings.model_repository, CLASSIFIER, 2)
    core = await build_core(settings, metrics)
    try:
        assert (await classify(core))[0] == 1
        state, why = state_of(core, CLASSIFIER, 2)
        assert state == "failed"
        assert re.search(reason, why), why
        labels = {"model": CLASSIFIER, "version": "2", "state": "failed"}
        assert metrics.registry.get_sample_value("pixelserve_model_state", labels) == 1
        assert core.is_ready()
    finally:
        await core.close()


async def test_unparseable_model_json_fails_only_that_version(settings: Settings, metrics: Metrics) -> None:
    path = write_classifier(settings.model_repository, version=2)
    (path / SPEC_FILE).write_text("{ not json")
    core = await build_core(settings, metrics)
    try:
        state, reason = state_of(core, CLASSIFIER, 2)
        assert state == "failed" and "model.json is invalid" in reason
        assert (await classify(core))[0] == 1
    finally:
        await core.close()


async def test_hot_reload_swaps_in_a_new_version(reloading_core: InferenceCore) -> None:
    core = reloading_core
    repo = core.settings.model_repository
    old = core.repository.resolve(ModelRef(CLASSIFIER))
    write_classifier(repo, version=2, seed=7)
    await eventually(lambda: core.repository.resolve(ModelRef(CLASSIFIER)).version == 2)
    version, probabilities = await classify(core)
    assert version == 2
    np.testing.assert_allclose(probabilities, expected_probabilities(repo, 2), rtol=1e-5, atol=1e-6)
    await eventually(lambda: state_of(core, CLASSIFIER, 1)[0] == "unavailable")
    with pytest.raises(ModelNotReady, match="being unloaded"):
        await old.batcher.submit({"image": X})


async def test_broken_new_version_is_rejected_while_the_old_one_keeps_serving(
    reloading_core: InferenceCore, metrics: Metrics
) -> None:
    core = reloading_core
    write_broken_onnx(core.settings.model_repository, CLASSIFIER, 2)
    await eventually(lambda: state_of(core, CLASSIFIER, 2)[0] == "failed")
    version, probabilities = await classify(core)
    assert version == 1
    np.testing.assert_allclose(probabilities, expected_probabilities(core.settings.model_repository, 1), rtol=1e-5)
    assert metrics.registry.get_sample_value(
        "pixelserve_model_state", {"model": CLASSIFIER, "version": "1", "state": "ready"}
    )
    assert core.is_ready()


async def test_replaced_files_of_the_served_version_are_reloaded_in_place(reloading_core: InferenceCore) -> None:
    core = reloading_core
    repo = core.settings.model_repository
    before = core.repository.resolve(ModelRef(CLASSIFIER))
    write_classifier(repo, version=1, seed=11)
    await eventually(lambda: core.repository.resolve(ModelRef(CLASSIFIER)) is not before)
    _, probabilities = await classify(core)
    np.testing.assert_allclose(probabilities, expected_probabilities(repo, 1), rtol=1e-5, atol=1e-6)


async def test_removed_version_falls_back_and_a_removed_model_is_gone(reloading_core: InferenceCore) -> None:
    core = reloading_core
    repo = core.settings.model_repository
    write_classifier(repo, version=2, seed=7)
    await eventually(lambda: core.repository.resolve(ModelRef(CLASSIFIER)).version == 2)
    shutil.rmtree(repo / CLASSIFIER / "2")
    await eventually(lambda: core.repository.resolve(ModelRef(CLASSIFIER)).version == 1)
    shutil.rmtree(repo / CLASSIFIER)
    await eventually(lambda: CLASSIFIER not in {s.name for s in core.index()})
    with pytest.raises(ModelNotFound):
        await classify(core)


async def test_unload_stops_serving_until_load_even_with_hot_reload(reloading_core: InferenceCore) -> None:
    core = reloading_core
    await core.unload(CLASSIFIER)
    assert state_of(core, CLASSIFIER, 1) == ("unavailable", "unloaded")
    with pytest.raises(ModelNotReady, match="unloaded"):
        await classify(core)
    assert not core.is_ready(ModelRef(CLASSIFIER)) and core.is_ready()
    await asyncio.sleep(3 * core.settings.reload_interval_s)
    assert state_of(core, CLASSIFIER, 1)[0] == "unavailable"
    await core.load(CLASSIFIER)
    assert (await classify(core))[0] == 1
    with pytest.raises(ModelNotFound):
        await core.unload("nope")


async def test_hot_reload_under_concurrent_load_loses_no_request(reloading_core: InferenceCore) -> None:
    core = reloading_core
    repo = core.settings.model_repository
    expected = {1: expected_probabilities(repo, 1, X[:1])}
    seen: list[int] = []
    errors: list[BaseException] = []

    async def client() -> None:
        """Classify until 20 answers came from version 2; any error ends the client and fails the test."""
        while seen.count(2) < 8 * 20:
            try:
                version, probabilities = await classify(core, X[:1])
            except Exception as exc:
                errors.append(exc)
                return
            seen.append(version)
            np.testing.assert_allclose(probabilities, expected[version], rtol=1e-5, atol=1e-6)

    clients = [asyncio.ensure_future(client()) for _ in range(8)]
    try:
        await eventually(lambda: len(seen) > 50)
        write_classifier(repo, version=2, seed=7)
        expected[2] = expected_probabilities(repo, 2, X[:1])
        await eventually(lambda: core.repository.resolve(ModelRef(CLASSIFIER)).version == 2)
        await asyncio.wait_for(asyncio.gather(*clients), 30)
    finally:
        for task in clients:
            task.cancel()
    assert errors == []
    assert seen.count(1) > 50 and seen.count(2) >= 8 * 20
    assert seen[-1] == 2


async def test_requests_before_the_first_scan_are_not_ready_rather_than_not_found(
    settings: Settings, metrics: Metrics
) -> None:
    core = InferenceCore(settings, metrics)
    with pytest.raises(ModelNotReady, match="still being scanned"):
        await classify(core)
    assert not core.is_ready() and not core.is_ready(ModelRef(CLASSIFIER))
    await core.start()
    try:
        assert (await classify(core))[0] == 1 and core.is_ready()
    finally:
        await core.close()


async def test_with_every_model_unloaded_on_purpose_the_server_stays_ready(reloading_core: InferenceCore) -> None:
    """Readiness wants a repository that holds a model, not one that serves one: a fleet whose models were all
    unloaded through the API must stay reachable behind its Service to load them again."""
    core = reloading_core
    for name in {status.name for status in core.index()}:
        await core.unload(name)
    assert not any(status.state == "ready" for status in core.index())
    assert core.is_ready()
