"""The quality gate on hot reload, under load: a new version that fails its golden set never takes traffic,
says why in the index, the log and a metric, and the version already serving keeps answering every request."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from pixelserve.golden import load
from pixelserve.modelspec import SPEC_FILE, ModelSpec
from pixelserve.service.core.types import ImageInputs, ModelRef
from pixelserve.service.observe.metrics import Metrics
from pixelserve.service.settings import Settings
from pixelserve.service.wiring import build_core
from tests.service.test_repository import eventually, state_of
from tests.service.test_verify import COMMITTED, perturb_graph

MNIST = "mnist-classifier"


def as_version(source: Path, target: Path, version: int) -> Path:
    """A copy of a version directory under another version number (model.json follows)."""
    shutil.copytree(source, target / ".staging")
    spec = json.loads((target / ".staging" / SPEC_FILE).read_text())
    spec["version"] = version
    (target / ".staging" / SPEC_FILE).write_text(json.dumps(spec, indent=2))
    final = target / str(version)
    (target / ".staging").rename(final)
    return final


@pytest.mark.slow
async def test_a_failing_version_stays_out_under_load_and_a_good_one_swaps_in(tmp_path: Path) -> None:
    repository = tmp_path / "models"
    source = max((COMMITTED / MNIST).iterdir(), key=lambda p: int(p.name))
    model_dir = repository / MNIST
    as_version(source, model_dir, 1)
    metrics = Metrics()
    settings = Settings(model_repository=repository, device="cpu", hot_reload=True, reload_interval_s=0.1,
                        max_batch_size=16, intra_op_threads=1)  # fmt: skip
    core = await build_core(settings, metrics)
    png = load(model_dir / "1" / "golden.npz").encoded[:4]  # real MNIST test PNGs
    outcomes: list[int | str] = []
    stop = asyncio.Event()

    async def load_generator() -> None:
        while not stop.is_set():
            try:
                result = await core.classify(ModelRef(MNIST), ImageInputs(encoded=png))
                outcomes.append(result.model.version)
            except Exception as error:  # every failure is counted: there must be none
                outcomes.append(type(error).__name__)

    workers = [asyncio.create_task(load_generator()) for _ in range(4)]
    try:
        await asyncio.sleep(0.3)
        bad = as_version(source, tmp_path / "incoming-bad", 2)
        perturb_graph(bad)
        ModelSpec.load(bad / SPEC_FILE).write(bad)  # a re-trained graph with its own digests: only the gate sees it
        bad.rename(model_dir / "2")
        await eventually(lambda: state_of(core, MNIST, 2)[0] == "failed")
        _, reason = state_of(core, MNIST, 2)
        assert reason.startswith("quality gate: golden set failed"), reason
        rejected = metrics.registry.get_sample_value(
            "pixelserve_version_rejections_total", {"model": MNIST, "reason": "quality_gate"}
        )
        assert rejected == 1
        assert core.repository.resolve(ModelRef(MNIST)).version == 1
        await asyncio.sleep(0.3)

        shutil.rmtree(model_dir / "2")
        as_version(source, tmp_path / "incoming-good", 3).rename(model_dir / "3")
        await eventually(lambda: core.repository.resolve(ModelRef(MNIST)).version == 3)
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await asyncio.gather(*workers)
        await core.close()
    failures = [o for o in outcomes if isinstance(o, str)]
    assert not failures, failures[:5]
    assert 2 not in outcomes, "the failing version answered a request"
    assert {1, 3} <= set(outcomes)
