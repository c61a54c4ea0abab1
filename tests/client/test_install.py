"""The extras as a user installs them, into fresh virtual environments (no system site-packages), from a copy of
the sources, with pip and the package index:

- ``[client]`` alone holds no onnxruntime, FastAPI or uvicorn, and classifies and denoises a PNG over REST and
  gRPC, sync and async, against a running server (about 25 s here);
- ``[serve]`` resolves to the CPU onnxruntime, never onnxruntime-gpu (pip's dry run, about 16 s);
- ``[serve]`` installed for real runs ``pixelserve verify --url --grpc`` against a running server of the committed
  models (about 30 s).

Without a reachable package index they skip on a workstation and fail under CI=true (tests/prerequisites.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import venv
from pathlib import Path

import pytest

from tests import prerequisites
from tests.client.conftest import API_KEY
from tests.packaging.test_wheel import _copy_sources
from tests.service.rest_support import ServerProcess, server_process

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
SERVER_SIDE = {"onnxruntime", "onnxruntime-gpu", "fastapi", "starlette", "uvicorn"}
CLIENT_CHECK = """
import asyncio, io, sys
import numpy as np
from PIL import Image
import pixelserve.client as pc

rest, grpc_address, key = sys.argv[1:4]
png = io.BytesIO()
Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8)).save(png, "PNG")
png = png.getvalue()
answers = []
for url in (rest, grpc_address):
    with pc.Client(url, api_key=key) as client:
        label = client.classify("tiny-classifier", png).one.label
        answers.append((label, client.denoise("tiny-denoiser", png).one.error))

async def main():
    for url in (rest, grpc_address):
        async with pc.AsyncClient(url, api_key=key) as client:
            label = (await client.classify("tiny-classifier", png)).one.label
            error = (await client.denoise("tiny-denoiser", png)).one.error
            answers.append((label, error))

asyncio.run(main())
assert len(set(answers)) == 1, answers
loaded = {m.split(".")[0] for m in sys.modules}
assert not loaded & {"onnxruntime", "fastapi", "starlette", "uvicorn"}, loaded
print(pc.__file__)
"""


def _venv(path: Path) -> Path:
    """A fresh environment with pip and nothing else; returns its python."""
    venv.EnvBuilder(with_pip=True, system_site_packages=False, clear=True).create(path)
    return path / "bin" / "python"


def _clean_env() -> dict[str, str]:
    """This process's environment without what would let the venv see the checkout or the dev environment."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}


def _pip(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [str(python), "-m", "pip", "--disable-pip-version-check", *args]
    return subprocess.run(command, cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of what the wheel is built from, so pip writes nothing into the checkout."""
    return _copy_sources(tmp_path_factory.mktemp("sources") / "pixelserve")


def _require_index(python: Path, cwd: Path) -> None:
    probe = _pip(python, "install", "--dry-run", "--no-deps", "--quiet", "httpx", cwd=cwd)
    prerequisites.require(probe.returncode == 0, f"no package index reachable: {probe.stderr.strip()[-300:]}")


def _installed(python: Path, cwd: Path) -> set[str]:
    listing = _pip(python, "list", "--format=json", cwd=cwd)
    assert listing.returncode == 0, listing.stderr
    return {p["name"].lower() for p in json.loads(listing.stdout)}


def test_serve_resolves_to_the_cpu_runtime_only(sources: Path, tmp_path: Path) -> None:
    python = _venv(tmp_path / "venv")
    _require_index(python, tmp_path)
    report = tmp_path / "report.json"
    resolved = _pip(python, "install", "--dry-run", "--quiet", "--report", str(report), f"{sources}[serve]",
                    cwd=tmp_path)  # fmt: skip
    assert resolved.returncode == 0, resolved.stderr
    names = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert "onnxruntime" in names and "httpx" in names  # the CPU runtime, and what `verify --url` needs
    assert not {n for n in names if n == "onnxruntime-gpu" or n.startswith("nvidia-")}, sorted(names)


def test_the_client_alone_installs_and_answers_over_both_transports(
    sources: Path, tmp_path: Path, served: ServerProcess
) -> None:
    python = _venv(tmp_path / "venv")
    _require_index(python, tmp_path)
    installed = _pip(python, "install", "--quiet", f"{sources}[client]", cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr
    assert not _installed(python, tmp_path) & SERVER_SIDE
    grpc_address = f"grpc://127.0.0.1:{served.grpc_port}"
    run = subprocess.run([str(python), "-c", CLIENT_CHECK, served.url, grpc_address, API_KEY], cwd=tmp_path,
                         env=_clean_env(), capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().startswith(str(tmp_path / "venv"))  # the installed package, not the checkout


def test_a_serve_install_verifies_a_running_server(sources: Path, tmp_path: Path) -> None:
    python = _venv(tmp_path / "venv")
    _require_index(python, tmp_path)
    installed = _pip(python, "install", "--quiet", f"{sources}[serve]", cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr
    packages = _installed(python, tmp_path)
    assert "onnxruntime" in packages and "onnxruntime-gpu" not in packages
    models = ROOT / "models"
    with server_process(models, tmp_path / "server.log") as server:
        verify = subprocess.run(
            [str(python.parent / "pixelserve"), "verify", "--model-repository", str(models), "--url", server.url,
             "--grpc", f"127.0.0.1:{server.grpc_port}"],
            cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert '"passed": true' in verify.stdout and " over gRPC " in verify.stdout and " over REST " in verify.stdout
