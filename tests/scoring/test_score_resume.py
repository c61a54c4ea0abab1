"""Exactly once across a crash: SIGKILL a real `python -m pixelserve score` mid-run, rerun it, compare."""

from __future__ import annotations

import json
import signal
import time

import numpy as np

from pixelserve.service.scoring.manifest import MANIFEST, work_dir_for
from tests.scoring.conftest import ids, read_rows, score, score_process
from tests.service.models import CLASSIFIER, random_images

COUNT = 20_000
SHARD = 100


def finished_shards(out) -> int:
    try:
        return len(json.loads((work_dir_for(out) / MANIFEST).read_text())["shards"])
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def test_killed_run_resumes_and_scores_every_input_exactly_once(model_repository, tmp_path) -> None:
    np.savez(tmp_path / "data.npz", x_test=random_images(COUNT, seed=5))
    out = tmp_path / "out.parquet"
    job = ["--model", CLASSIFIER, "--model-repository", model_repository, "--input", tmp_path / "data.npz",
           "--shard-size", str(SHARD)]  # fmt: skip
    args = [*job, "--output", out, "--batch-size", "1"]  # batch size 1: slow enough to be killed mid-run

    child = score_process(*args)
    deadline = time.monotonic() + 120
    while finished_shards(out) < 3 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    killed_at = finished_shards(out)
    assert 3 <= killed_at < COUNT // SHARD, "the child must die with work left to do"
    assert not out.exists()

    rerun = score_process(*args)
    _, stderr = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, stderr
    assert f"this run scored {COUNT - killed_at * SHARD} " in stderr
    assert f"{killed_at} of {COUNT // SHARD} shards were already done" in stderr
    rows = read_rows(out)
    assert ids(rows) == list(range(COUNT))  # no duplicates, no gaps, in order

    clean = tmp_path / "clean.parquet"
    assert score(*job, "--output", clean) == 0
    assert rows == read_rows(clean)
