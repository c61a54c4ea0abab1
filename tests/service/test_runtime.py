"""Execution-provider selection and warm-up on real onnxruntime sessions.

Whether CUDA really works is asked of onnxruntime directly (a CUDA-only session), so these tests state the
right expectation on a GPU machine as well as on this CPU-only one.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from pixelserve.modelspec import MODEL_FILE, SPEC_FILE, ModelSpec
from pixelserve.service.core import runtime
from pixelserve.service.core.runtime import CPU, CUDA, BoundRunner, ModelRunner, SessionFactory, warm_up
from pixelserve.service.core.types import ImageInputs, ModelRef
from pixelserve.service.errors import ModelNotReady
from pixelserve.service.observe.metrics import Metrics
from pixelserve.service.settings import Settings
from pixelserve.service.wiring import build_core
from tests.service.models import CLASSIFIER, random_images, reference_session


def model_path(repo: Path) -> Path:
    return repo / CLASSIFIER / "1" / MODEL_FILE


def cuda_really_works(repo: Path) -> bool:
    if CUDA not in ort.get_available_providers():
        return False
    return ort.InferenceSession(str(model_path(repo)), providers=[CUDA]).get_providers()[0] == CUDA


def test_auto_uses_cuda_only_when_it_really_runs(repository_template: Path) -> None:
    runner = SessionFactory(Settings(device="auto")).create(model_path(repository_template))
    assert runner.provider == (CUDA if cuda_really_works(repository_template) else CPU)


def test_auto_falls_back_once_and_then_goes_straight_to_cpu(repository_template: Path, caplog, monkeypatch) -> None:
    """A driver is there (pretended, where there is none) but CUDA cannot start: one warning, then CPU. With the
    CPU build of onnxruntime ([serve]'s) there is no CUDA provider to try: CPU at once, nothing to warn about."""
    if cuda_really_works(repository_template):
        pytest.skip("CUDA works here; there is no fallback to observe")
    warnings = 1 if CUDA in ort.get_available_providers() else 0
    monkeypatch.setattr(runtime, "nvidia_driver_present", lambda: True)
    factory = SessionFactory(Settings(device="auto"))
    with caplog.at_level(logging.WARNING, logger="pixelserve.service.core.runtime"):
        first = factory.create(model_path(repository_template))
        second = factory.create(model_path(repository_template))
    assert first.provider == second.provider == CPU
    assert second.session.get_providers() == [CPU], "the second session must not try CUDA again"
    assert len([r for r in caplog.records if "not usable" in r.message]) == warnings


def test_cpu_device_registers_only_the_cpu_provider(repository_template: Path) -> None:
    runner = SessionFactory(Settings(device="cpu", intra_op_threads=1)).create(model_path(repository_template))
    assert runner.session.get_providers() == [CPU]
    assert runner.session.get_session_options().intra_op_num_threads == 1
    x = random_images(2)
    expected = reference_session(repository_template, CLASSIFIER).run(None, {"image": x})[0]
    np.testing.assert_allclose(runner({"image": x})["probabilities"], expected, rtol=1e-6)


@pytest.mark.parametrize("device", ["cuda", "tensorrt"])
def test_explicit_gpu_device_that_cannot_run_fails_clearly(repository_template: Path, device: str) -> None:
    if cuda_really_works(repository_template):
        pytest.skip("CUDA works here")
    with pytest.raises(ModelNotReady, match=f"device={device} was requested") as info:
        SessionFactory(Settings(device=device)).create(model_path(repository_template))  # type: ignore[arg-type]
    assert "device=auto" in info.value.message or "device=cpu" in info.value.message


async def test_explicit_cuda_marks_models_failed_instead_of_serving_on_cpu(settings: Settings, metrics: Metrics):
    if cuda_really_works(settings.model_repository):
        pytest.skip("CUDA works here")
    core = await build_core(settings.model_copy(update={"device": "cuda"}), metrics)
    try:
        statuses = core.index()
        assert statuses and all(s.state == "failed" and "device=cuda" in s.reason for s in statuses)
        assert not core.is_ready()
        with pytest.raises(ModelNotReady, match="device=cuda"):
            await core.classify(ModelRef(CLASSIFIER), ImageInputs(tensor=random_images(1)))
    finally:
        await core.close()


@pytest.mark.parametrize(
    ("max_batch_size", "sizes"),
    [(1, [1]), (8, [1, 2, 4, 8]), (20, [1, 2, 4, 8, 16, 20]), (1000, [1, 2, 4, 8, 16, 32, 64, 128, 256])],
)
def test_warm_up_runs_each_power_of_two_up_to_the_bounded_max(
    repository_template: Path, max_batch_size: int, sizes: list[int]
) -> None:
    real = ModelRunner(reference_session(repository_template, CLASSIFIER))
    seen: list[int] = []

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        seen.append(len(feeds["image"]))
        assert not feeds["image"].any()
        return real(feeds)

    spec = ModelSpec.load(repository_template / CLASSIFIER / "1" / SPEC_FILE)
    assert warm_up(run, spec, max_batch_size) == len(sizes)
    assert seen == sizes


async def test_each_loaded_model_logs_one_line_naming_its_provider(
    settings: Settings, metrics: Metrics, caplog
) -> None:
    with caplog.at_level(logging.INFO):
        core = await build_core(settings, metrics)
    try:
        lines = [r.getMessage() for r in caplog.records if "serving" in r.getMessage()]
        assert len(lines) == len(core.index()) == 4
        assert all(CPU in line for line in lines)
        assert core.model_info(ModelRef(CLASSIFIER)).provider == CPU
    finally:
        await core.close()


def test_spinning_is_off_unless_asked_for(repository_template: Path) -> None:
    for allow, expected in ((False, "0"), (True, "1")):
        runner = SessionFactory(Settings(device="cpu", allow_spinning=allow)).create(model_path(repository_template))
        options = runner.session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == expected


def test_io_binding_runner_answers_as_the_plain_one(repository_template: Path) -> None:
    """On CUDA the binding avoids staging copies; on CPU it must compute exactly the same thing."""
    bound = SessionFactory(Settings(device="cpu", io_binding="on")).create(model_path(repository_template))
    plain = SessionFactory(Settings(device="cpu", io_binding="off")).create(model_path(repository_template))
    assert isinstance(bound, BoundRunner) and not isinstance(plain, BoundRunner)
    x = random_images(5, seed=9)
    np.testing.assert_array_equal(bound({"image": x})["probabilities"], plain({"image": x})["probabilities"])


async def test_instances_load_one_session_each_and_report_the_count(settings: Settings, metrics: Metrics) -> None:
    core = await build_core(settings.model_copy(update={"instances": 2}), metrics)
    try:
        served = core.repository.resolve(ModelRef(CLASSIFIER))
        assert len(served.runners) == 2 and served.runners[0].session is not served.runners[1].session
        assert served.batcher.instances == 2
        assert core.model_info(ModelRef(CLASSIFIER)).instances == 2
        result = await core.classify(ModelRef(CLASSIFIER), ImageInputs(tensor=random_images(3)))
        assert len(result.items) == 3
    finally:
        await core.close()


def test_without_a_gpu_driver_auto_says_so_once_and_never_tries_cuda(repository_template: Path, caplog) -> None:
    if runtime.nvidia_driver_present():
        pytest.skip("this machine has an NVIDIA driver")
    factory = SessionFactory(Settings(device="auto"))
    with caplog.at_level(logging.INFO, logger="pixelserve.service.core.runtime"):
        runners = [factory.create(model_path(repository_template)) for _ in range(2)]
    assert all(r.session.get_providers() == [CPU] for r in runners), "CUDA must not even be registered"
    assert [r.message for r in caplog.records] == [
        "no NVIDIA GPU driver found: serving every model on CPUExecutionProvider"
    ]
