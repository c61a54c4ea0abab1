"""Fixtures for batch scoring: the tiny model repository of the service tests, real models and datasets when
present, and a runner for the real `pixelserve score` command (in-process or as a subprocess)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from pixelserve.service.scoring.main import main as score_main
from tests import prerequisites
from tests.s3_support import S3Server, s3_server
from tests.service.conftest import metrics, model_repository, repository_template, settings

__all__ = ["metrics", "model_repository", "repository_template", "settings"]

ROOT = Path(__file__).resolve().parents[2]
COMMITTED_MODELS = ROOT / "models"
SHARED_DATASETS = Path(os.environ.get("PIXELSERVE_DATA_DIR", ROOT.parent / "shared" / "datasets"))


def require(path: Path, what: str) -> Path:
    """Real models and data: skipped on a laptop without them, a failure in CI (CI=true), where they must exist."""
    prerequisites.require(path.exists(), f"{what} not found at {path}")
    return path


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    return require(SHARED_DATASETS / "mnist.npz", "the real datasets").parent


def score(*args: str | Path) -> int:
    """`pixelserve score ARGS --no-progress` in this process; returns the exit status."""
    return score_main([str(a) for a in args] + ["--no-progress"])


def score_process(*args: str | Path, **kwargs: Any) -> subprocess.Popen[str]:
    """`python -m pixelserve score ARGS` as a real child process."""
    command = [sys.executable, "-m", "pixelserve", "score", *map(str, args), "--no-progress", "--device", "cpu"]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """A real S3 API (moto's server) with buckets `inputs` and `results`; this process's s3fs points at it, and
    `store.env` does the same for child processes."""
    with s3_server(tmp_path / "moto.log") as server:
        for bucket in ("inputs", "results"):
            server.client.create_bucket(Bucket=bucket)
        for name, value in server.env.items():
            monkeypatch.setenv(name, value)
        yield server


def object_rows(store: S3Server, uri: str) -> list[dict[str, Any]]:
    """The rows of an output object (s3://bucket/key), as `read_rows` reads a local file."""
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    data = store.read(bucket, key)
    if key.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.read_table(io.BytesIO(data)).to_pylist()
    return [json.loads(line) for line in data.decode().splitlines()]


def without_path(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows as compared across locations: the `path` column names where each input was read from."""
    return [{k: v for k, v in row.items() if k != "path"} for row in rows]


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of any output format as dicts (CSV cells as text, as a CSV reader sees them)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if path.suffix == ".csv":
        import csv

        with path.open(newline="") as f:
            return list(csv.DictReader(f))
    return [json.loads(line) for line in path.read_text().splitlines()]


def ids(rows: Sequence[dict[str, Any]]) -> list[Any]:
    return [row["id"] for row in rows]
