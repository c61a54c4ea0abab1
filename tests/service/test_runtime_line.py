"""`pixelserve serve` says first which onnxruntime distribution it runs on and what providers that build offers,
and warns when onnxruntime and onnxruntime-gpu are both installed (they share one module)."""

from __future__ import annotations

import logging
from importlib import metadata
from pathlib import Path

import onnxruntime as ort
import pytest

from pixelserve.service.core import runtime
from tests.service.rest_support import server_process


def _installed(monkeypatch: pytest.MonkeyPatch, versions: dict[str, str]) -> None:
    def version(name: str) -> str:
        if name in versions:
            return versions[name]
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", version)


def test_one_distribution_is_named_with_its_version_and_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    _installed(monkeypatch, {"onnxruntime": "1.32.0"})
    level, line = runtime.runtime_line()
    assert level == logging.INFO
    assert line == f"runtime: onnxruntime 1.32.0, providers {', '.join(ort.get_available_providers())}"
    _installed(monkeypatch, {"onnxruntime-gpu": "1.31.1"})
    assert runtime.runtime_line()[1].startswith("runtime: onnxruntime-gpu 1.31.1, providers ")


def test_both_distributions_installed_is_a_warning_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    _installed(monkeypatch, {"onnxruntime": "1.32.0", "onnxruntime-gpu": "1.31.1"})
    level, line = runtime.runtime_line()
    assert level == logging.WARNING
    assert "onnxruntime 1.32.0 and onnxruntime-gpu 1.31.1 are both installed" in line
    assert "pip uninstall -y onnxruntime onnxruntime-gpu" in line


def test_the_server_logs_the_runtime_line_first(model_repository: Path, tmp_path: Path) -> None:
    with server_process(model_repository, tmp_path / "server.log") as server:
        first = server.log().splitlines()[0]
    assert "pixelserve.service.process.cli: runtime: onnxruntime" in first
    assert "CPUExecutionProvider" in first
