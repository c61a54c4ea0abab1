"""The one seam for operations: the core reports every request to the registered hooks, a failing hook never
fails a request, and the core itself holds no operations code."""

from __future__ import annotations

import ast
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pixelserve.service.core.calls import Call
from pixelserve.service.core.core import InferenceCore
from pixelserve.service.core.types import ImageInputs, ModelRef
from pixelserve.service.errors import InvalidInput, ModelNotFound
from pixelserve.service.hooks import Hooks, RequestHook
from pixelserve.service.observe.metrics import Metrics
from pixelserve.service.settings import Settings
from tests.service.models import CLASSIFIER, DENOISER, encode_image, random_images

CORE = Path(__file__).resolve().parents[2] / "service" / "core"


class Recorder(RequestHook):
    def __init__(self) -> None:
        self.events: list[tuple[str, Call, Any]] = []

    def started(self, call: Call) -> None:
        self.events.append(("started", call, None))

    def answered(self, call: Call, result: Any) -> None:
        self.events.append(("answered", call, result))

    def failed(self, call: Call, error: BaseException) -> None:
        self.events.append(("failed", call, error))


class Exploding(RequestHook):
    def answered(self, call: Call, result: Any) -> None:
        raise RuntimeError("a broken operations feature")


@pytest.fixture
async def recorded(settings: Settings, metrics: Metrics) -> AsyncIterator[tuple[InferenceCore, Recorder]]:
    recorder = Recorder()
    core = InferenceCore(settings, metrics, Hooks([Exploding(), recorder]))
    await core.start()
    yield core, recorder
    await core.close()


def png(seed: int = 0) -> ImageInputs:
    return ImageInputs(encoded=[encode_image(random_images(1, seed=seed)[0])])


async def test_an_answered_request_reaches_the_hooks_with_its_served_version_and_timings(recorded) -> None:
    core, recorder = recorded
    result = await core.classify(ModelRef(CLASSIFIER), png(), top_k=2)
    assert [event for event, _, _ in recorder.events] == ["started", "answered"]
    _, call, answer = recorder.events[1]
    assert answer is result
    assert call.served is not None and (call.served.name, call.served.version) == (CLASSIFIER, 1)
    assert call.protocol == ""  # in-process: no adapter opened it
    assert call.started <= call.preparing <= call.prepared <= call.answered
    # the model and its paired autoencoder, recorded in the order their batches finished
    assert sorted(run.role for run in call.runs) == ["", "ood."]
    assert call.batch is not None and call.predicted is not None and call.predicted.shape == (1,)


async def test_a_failing_hook_is_logged_and_the_request_is_still_answered(recorded, caplog) -> None:
    core, _ = recorded
    with caplog.at_level(logging.ERROR, logger="pixelserve.service.hooks"):
        result = await core.denoise(ModelRef(DENOISER), png(1))
    assert len(result.items) == 1
    assert "Exploding.answered failed" in caplog.text


async def test_a_refused_request_reaches_the_failed_hook_with_its_error(recorded) -> None:
    core, recorder = recorded
    with pytest.raises(ModelNotFound):
        await core.classify(ModelRef("no-such-model"), png())
    (started, _, _), (failed, call, error) = recorder.events
    assert (started, failed) == ("started", "failed")
    assert isinstance(error, ModelNotFound) and call.served is None and call.model == "no-such-model"


async def test_an_adapter_scope_counts_a_request_its_decoding_refused(recorded) -> None:
    core, recorder = recorded
    with pytest.raises(InvalidInput), core.request("classify", CLASSIFIER, "rest") as call:
        raise InvalidInput("not an image")
    assert [event for event, _, _ in recorder.events] == ["started", "failed"]
    assert recorder.events[1][1] is call and call.protocol == "rest" and call.served is None


async def test_the_core_fills_the_adapter_scope_instead_of_opening_its_own(recorded) -> None:
    core, recorder = recorded
    with core.request("classify", CLASSIFIER, "grpc") as call:
        result = await core.classify(ModelRef(CLASSIFIER), png())
    assert [event for event, _, _ in recorder.events] == ["started", "answered"]
    assert call.result is result and call.served is not None


def test_the_core_package_holds_no_operations_code() -> None:
    """No module of the request path imports an operations feature; they are hooks the wiring registers."""
    features = ("tracing", "access_log", "drift", "payload", "opentelemetry")
    for module in CORE.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.ImportFrom | ast.Import):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                names += [alias.name for alias in node.names]
                bad = [n for n in names if any(f in n for f in features)]
                assert not bad, f"{module.name} imports {bad}"
