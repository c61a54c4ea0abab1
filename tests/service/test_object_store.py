"""A model repository in S3, against moto's real S3 API server: the server lists the bucket, downloads each
version whole, checks its digests and golden set, and keeps serving through uploads, deletions and outages.
The store is reached through a relay the tests can cut (tests/s3_support.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from pixelserve.modelspec import MODEL_FILE, SPEC_FILE, ModelSpec

from ..s3_support import CREDENTIALS, S3Server, s3_server
from .calls_support import FEATURE_ENV, FEATURES
from .rest_support import ServerProcess, server_process

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "models" / "mnist-classifier" / "3"
NAME, BUCKET, PREFIX = "mnist-classifier", "models", "fleet/repo"
URI = f"s3://{BUCKET}/{PREFIX}"
POLL = "0.3"


def _version_dir(tmp_path: Path, version: int) -> Path:
    """The committed classifier as another version number: same files, model.json renumbered and re-stamped."""
    folder = tmp_path / f"v{version}"
    shutil.copytree(SOURCE, folder)
    ModelSpec.load(folder / SPEC_FILE).model_copy(update={"version": version}).write(folder)
    return folder


def _digits() -> list[bytes]:
    with np.load(SOURCE / "golden.npz") as golden:
        offsets, blob = golden["offsets"], golden["encoded"].tobytes()
    return [blob[offsets[i] : offsets[i + 1]] for i in range(8)]


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3Server]:
    with s3_server(tmp_path / "moto.log") as server:
        server.client.create_bucket(Bucket=BUCKET)
        server.upload_dir(_version_dir(tmp_path, 2), BUCKET, f"{PREFIX}/{NAME}/2")
        yield server


@pytest.fixture
def server(s3: S3Server, tmp_path: Path) -> Iterator[ServerProcess]:
    """Every operations feature on, as in the abuse suites (the payload log too)."""
    args = ("--model-cache-dir", str(tmp_path / "cache"), "--reload-interval-s", POLL, *FEATURES,
            "--payload-log-dir", str(tmp_path / "payloads"))  # fmt: skip
    env = {**s3.env, **FEATURE_ENV, "OTEL_TRACES_EXPORTER": "none"}
    with server_process(URI, tmp_path / "server.log", *args, env=env) as process:  # type: ignore[arg-type]
        yield process


class Load:
    """Clients classifying real digits without pause; every answer's status and serving version is kept."""

    def __init__(self, url: str, threads: int = 2) -> None:
        self.answers: Counter[tuple[int, int | None]] = Counter()
        self._stop = threading.Event()
        self._digits = _digits()
        self._threads = [threading.Thread(target=self._run, args=(url,)) for _ in range(threads)]
        for t in self._threads:
            t.start()

    def _run(self, url: str) -> None:
        with httpx.Client(timeout=10) as client:
            i = 0
            while not self._stop.is_set():
                try:
                    r = client.post(f"{url}/v1/models/{NAME}:classify", content=self._digits[i % 8])
                    version = r.json()["model"]["version"] if r.status_code == 200 else None
                    self.answers[(r.status_code, version)] += 1
                except httpx.TransportError:
                    self.answers[(0, None)] += 1
                i += 1

    def stop(self) -> Counter[tuple[int, int | None]]:
        self._stop.set()
        for t in self._threads:
            t.join()
        return self.answers


def _served_version(server: ServerProcess) -> int:
    return httpx.post(f"{server.url}/v1/models/{NAME}:classify", content=_digits()[0]).json()["model"]["version"]


def _wait_for(check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _index(server: ServerProcess) -> dict[str, dict[str, str]]:
    entries = httpx.post(f"{server.url}/v2/repository/index", json={}).json()
    return {e["version"]: e for e in entries if e["name"] == NAME}


def _metric(server: ServerProcess, name: str) -> float:
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def test_a_version_uploaded_under_load_swaps_in_with_nothing_lost(
    s3: S3Server, server: ServerProcess, tmp_path: Path
) -> None:
    assert _served_version(server) == 2
    load = Load(server.url)
    time.sleep(0.5)
    s3.upload_dir(_version_dir(tmp_path, 3), BUCKET, f"{PREFIX}/{NAME}/3")
    _wait_for(lambda: load.answers[(200, 3)] >= 20)
    answers = load.stop()
    assert set(answers) == {(200, 2), (200, 3)}, answers  # every request answered, by one version or the other
    assert answers[(200, 2)] > 0
    assert "fetched mnist-classifier version 3 from s3://models/fleet/repo" in server.log()
    assert _metric(server, "pixelserve_model_repository_fetch_seconds_count") == 2  # versions 2 and 3


def test_a_half_uploaded_version_is_never_served(s3: S3Server, server: ServerProcess, tmp_path: Path) -> None:
    v3 = _version_dir(tmp_path, 3)
    load = Load(server.url, threads=1)
    s3.upload_dir(v3, BUCKET, f"{PREFIX}/{NAME}/3", order=sorted({p.name for p in v3.iterdir()} - {MODEL_FILE}))
    _wait_for(lambda: "upload incomplete" in _index(server).get("3", {}).get("reason", ""))
    # the other model's graph under this version's name: there, but not the file model.json records
    other = ROOT / "models" / "mnist-classifier-int8" / "2" / MODEL_FILE
    s3.client.upload_file(str(other), BUCKET, f"{PREFIX}/{NAME}/3/{MODEL_FILE}")
    _wait_for(lambda: "sha256" in _index(server).get("3", {}).get("reason", ""))
    time.sleep(1.0)
    assert {version for _, version in load.answers} == {2}
    s3.upload_dir(v3, BUCKET, f"{PREFIX}/{NAME}/3", order=[MODEL_FILE])  # the upload completes
    _wait_for(lambda: load.answers[(200, 3)] > 0)
    answers = load.stop()
    assert {status for status, _ in answers} == {200}, answers


def test_a_deleted_version_leaves_and_the_previous_one_serves(
    s3: S3Server, server: ServerProcess, tmp_path: Path
) -> None:
    s3.upload_dir(_version_dir(tmp_path, 3), BUCKET, f"{PREFIX}/{NAME}/3")
    _wait_for(lambda: _served_version(server) == 3)
    assert list((tmp_path / "cache").glob(f"*/{NAME}/3/*/{MODEL_FILE}"))
    load = Load(server.url, threads=1)
    s3.delete_prefix(BUCKET, f"{PREFIX}/{NAME}/3")
    _wait_for(lambda: load.answers[(200, 2)] > 5)
    answers = load.stop()
    assert {status for status, _ in answers} == {200}, answers
    assert "3" not in _index(server)
    assert not list((tmp_path / "cache").glob(f"*/{NAME}/3")), "the deleted version's cache folder stays"


def test_an_unreachable_store_keeps_serving_and_says_so_once(s3: S3Server, server: ServerProcess) -> None:
    assert _metric(server, "pixelserve_model_repository_up") == 1
    s3.relay.cut()
    load = Load(server.url, threads=1)
    _wait_for(lambda: _metric(server, "pixelserve_model_repository_failures_total") >= 3, timeout_s=30)
    assert _metric(server, "pixelserve_model_repository_up") == 0
    answers = load.stop()
    assert set(answers) == {(200, 2)}, answers
    assert server.log().count("is unreachable") == 1
    s3.relay.mend()
    _wait_for(lambda: _metric(server, "pixelserve_model_repository_up") == 1, timeout_s=30)
    assert "is reachable again" in server.log()
    assert _served_version(server) == 2
    log = server.log()
    assert CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in log and CREDENTIALS["AWS_ACCESS_KEY_ID"] not in log


@pytest.mark.parametrize("where", ["s3://no-such-bucket/repo", f"s3://{BUCKET}/no/such/prefix"])
def test_a_missing_bucket_or_prefix_stops_start_up_naming_it(s3: S3Server, tmp_path: Path, where: str) -> None:
    command = [sys.executable, "-m", "pixelserve.service", "--model-repository", where, "--http-port", "0",
               "--grpc-port", "0", "--model-cache-dir", str(tmp_path / "cache")]  # fmt: skip
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60, env={**os.environ, **s3.env})
    assert out.returncode == 2, out.stderr
    assert f"model repository {where} does not exist or holds no objects" in out.stderr
