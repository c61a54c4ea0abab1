"""The serving image's requirements come from pyproject's extras (deploy/docker/requirements.py): the CPU image's
`serve` has the CPU onnxruntime, the GPU image's `serve,gpu` has onnxruntime-gpu instead, never both."""

from __future__ import annotations

import importlib.util
import re
import sys

from tests.deploy.support import ROOT

PYPROJECT = ROOT / "pyproject.toml"
spec = importlib.util.spec_from_file_location("image_requirements", ROOT / "deploy" / "docker" / "requirements.py")
assert spec is not None and spec.loader is not None
image_requirements = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = image_requirements
spec.loader.exec_module(image_requirements)


def _names(requirements: list[str]) -> list[str]:
    return [re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower() for r in requirements]


def test_the_cpu_image_takes_onnxruntime_and_httpx() -> None:
    names = _names(image_requirements.requirements(PYPROJECT, ["serve"]))
    assert "onnxruntime" in names and "onnxruntime-gpu" not in names
    assert "httpx" in names  # `pixelserve verify --url` in the image
    assert len(names) == len(set(names))


def test_the_gpu_image_replaces_the_runtime_with_onnxruntime_gpu_and_its_cuda_wheels() -> None:
    requirements = image_requirements.requirements(PYPROJECT, ["serve", "gpu"])
    names = _names(requirements)
    assert "onnxruntime-gpu" in names and "onnxruntime" not in names
    (gpu,) = [r for r in requirements if r.startswith("onnxruntime-gpu")]
    assert "cuda" in gpu and "cudnn" in gpu  # onnxruntime-gpu's own extras: the CUDA runtime and cuDNN wheels
    cpu = _names(image_requirements.requirements(PYPROJECT, ["serve"]))
    assert sorted(set(names) - {"onnxruntime-gpu"}) == sorted(set(cpu) - {"onnxruntime"})  # nothing else differs


def test_the_command_line_takes_a_comma_list(capsys) -> None:
    assert image_requirements.main([str(PYPROJECT), "serve,gpu"]) == 0
    assert "onnxruntime-gpu[cuda,cudnn]" in capsys.readouterr().out
    assert image_requirements.main([str(PYPROJECT)]) == 2
