"""A wrong repository fails loudly: an unreadable URI or a missing folder stops start-up naming it, and a server whose
repository holds no model is not ready, so a pod with a mistyped path takes no traffic. --allow-empty-repository
is the explicit way to start without one."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.service.models import CLASSIFIER
from tests.service.rest_support import ROOT, ServerProcess, server_process


def _serve(repository: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pixelserve.service", "--model-repository", repository, "--http-port", "0",
               "--grpc-port", "0", *args]  # fmt: skip
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_a_scheme_no_store_reads_stops_start_up_naming_it() -> None:
    out = _serve("nosuchstore://bucket/models")
    assert out.returncode == 2
    assert "nosuchstore://bucket/models: no reader for nosuchstore:// URIs" in out.stderr


def test_a_uri_with_a_password_is_refused_without_printing_it() -> None:
    out = _serve("nosuchstore://reader:hunter2@bucket/models")
    assert out.returncode == 2
    assert "nosuchstore://bucket/models: no reader" in out.stderr and "hunter2" not in out.stderr


def test_a_store_whose_backend_is_not_installed_stops_start_up_saying_what_to_install() -> None:
    try:
        import gcsfs  # noqa: F401

        pytest.skip("gcsfs is installed here")
    except ImportError:
        pass
    out = _serve("gs://bucket/models")
    assert out.returncode == 2
    assert "model repository gs://bucket/models: gs:// needs its fsspec backend" in out.stderr
    assert "pip install 'pixelserve[gcs]'" in out.stderr


def test_a_missing_folder_stops_start_up_naming_it(tmp_path: Path) -> None:
    out = _serve(str(tmp_path / "mistyped"))
    assert out.returncode == 2
    assert f"model repository {tmp_path / 'mistyped'} does not exist" in out.stderr


def _ready(server: ServerProcess) -> int:
    return httpx.get(f"{server.url}/v2/health/ready", timeout=5).status_code


def _live(server: ServerProcess, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert server.process.poll() is None, server.log()
        try:
            if httpx.get(f"{server.url}/v2/health/live", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(server.log())


def test_an_empty_repository_is_not_ready_until_a_model_arrives(repository_template: Path, tmp_path: Path) -> None:
    empty = tmp_path / "models"
    empty.mkdir()
    server = ServerProcess(empty, tmp_path / "server.log", "--reload-interval-s", "0.2")
    try:
        _live(server)
        time.sleep(0.5)  # a few polls: still nothing to serve
        assert _ready(server) == 503
        shutil.copytree(repository_template / CLASSIFIER, empty / CLASSIFIER)
        deadline = time.monotonic() + 20
        while _ready(server) != 200:
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.1)
    finally:
        server.close()


def test_allow_empty_repository_starts_without_the_folder_and_is_ready(tmp_path: Path) -> None:
    with server_process(tmp_path / "later", tmp_path / "server.log", "--allow-empty-repository", "true") as server:
        assert _ready(server) == 200
        assert httpx.get(f"{server.url}/v2/models/{CLASSIFIER}/ready", timeout=5).status_code == 404
