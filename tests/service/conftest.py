"""Shared fixtures: a real model repository of tiny ONNX models, settings pointing at a private copy of it,
a fresh metrics registry and a started InferenceCore.

Writers for extra or broken versions live in `tests.service.models`, so reload tests can change the copy.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from pixelserve.service.core.core import InferenceCore
from pixelserve.service.observe.metrics import Metrics
from pixelserve.service.settings import Settings
from pixelserve.service.wiring import build_core
from tests.service.models import build_repository


@pytest.fixture(scope="session")
def repository_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built once per test session; tests never touch it, they get a copy."""
    return build_repository(tmp_path_factory.mktemp("template") / "models")


@pytest.fixture
def model_repository(repository_template: Path, tmp_path: Path) -> Path:
    """A private, writable copy of the standard repository (tiny-classifier, tiny-autoencoder, tiny-denoiser,
    tiny-classifier-rgb, all version 1)."""
    return Path(shutil.copytree(repository_template, tmp_path / "models"))


@pytest.fixture
def settings(model_repository: Path) -> Settings:
    """CPU only (no CUDA probing noise), small batches, no background reload unless a test turns it on."""
    return Settings(
        model_repository=model_repository,
        device="cpu",
        intra_op_threads=1,
        inter_op_threads=1,
        max_batch_size=8,
        max_queue_delay_ms=2.0,
        max_queue_size=64,
        request_timeout_s=10.0,
        hot_reload=False,
        reload_interval_s=0.1,
        drain_grace_s=2.0,
        http_host="127.0.0.1",
        allow_repository_control=True,  # tests of load/unload; the default (off) has tests of its own
        http_port=0,
        grpc_port=0,
    )


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


@pytest.fixture
async def core(settings: Settings, metrics: Metrics) -> AsyncIterator[InferenceCore]:
    """A started InferenceCore over the settings' repository, closed after the test."""
    started = await build_core(settings, metrics)
    yield started
    await started.close()
