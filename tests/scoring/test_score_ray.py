"""`--engine ray` on a local Ray: the same rows, errors file and resume semantics as the local engine, and with
the output in S3, shards written by the workers themselves and exactly once across a SIGKILL."""

from __future__ import annotations

import json
import signal
import time

import pytest

from pixelserve.service.scoring.cli import EXIT_SOME_INPUTS_FAILED
from pixelserve.service.scoring.manifest import MANIFEST, work_dir_for
from tests.scoring.conftest import ids, object_rows, read_rows, score, score_process, without_path
from tests.scoring.test_score_errors import write_mixed_folder
from tests.service.models import CLASSIFIER, encode_image, random_images

pytest.importorskip("ray.data", reason="the [batch] extra is not installed")


@pytest.mark.slow
def test_ray_engine_matches_the_local_engine_and_resumes_its_shards(model_repository, tmp_path, capsys) -> None:
    write_mixed_folder(tmp_path / "mixed")
    common = ["--model", CLASSIFIER, "--model-repository", model_repository, "--input", tmp_path / "mixed",
              "--shard-size", "4", "--device", "cpu"]  # fmt: skip
    assert score(*common, "--output", tmp_path / "local.jsonl") == EXIT_SOME_INPUTS_FAILED

    partial = tmp_path / "ray.jsonl"
    assert score(*common, "--output", partial) == EXIT_SOME_INPUTS_FAILED
    manifest_path = work_dir_for(partial) / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    del manifest["shards"]["1"]  # as if the local run had been killed before recording shard 1
    manifest_path.write_text(json.dumps(manifest))
    partial.unlink()
    capsys.readouterr()

    assert score(*common, "--output", partial, "--engine", "ray") == EXIT_SOME_INPUTS_FAILED
    report = capsys.readouterr().err
    assert "this run scored 4 " in report and "2 of 3 shards were already done" in report and "start-up" in report
    fresh = tmp_path / "fresh.jsonl"
    assert score(*common, "--output", fresh, "--engine", "ray", "--ray-actors", "1") == EXIT_SOME_INPUTS_FAILED

    local = read_rows(tmp_path / "local.jsonl")
    assert read_rows(partial) == local
    assert read_rows(fresh) == local
    assert (tmp_path / "fresh.errors.jsonl").read_text() == (tmp_path / "local.errors.jsonl").read_text()


COUNT, SHARD = 400, 8
SHARDS = COUNT // SHARD


def recorded_shards(store, key: str) -> dict[str, dict]:
    try:
        return json.loads(store.read("results", key))["shards"]
    except store.client.exceptions.NoSuchKey:
        return {}


@pytest.mark.slow
def test_ray_workers_write_shards_to_the_store_and_a_killed_job_resumes_exactly_once(model_repository, store,
                                                                                     tmp_path) -> None:  # fmt: skip
    for i, pixels in enumerate(random_images(COUNT, seed=9)):
        (tmp_path / "in" / f"{i:04d}.png").parent.mkdir(exist_ok=True)
        (tmp_path / "in" / f"{i:04d}.png").write_bytes(encode_image(pixels))
    store.upload_tree(tmp_path / "in", "inputs", "ray/in")
    out, manifest = "s3://results/ray/out.jsonl", "ray/out.jsonl.work/manifest.json"
    common = ["--model", CLASSIFIER, "--model-repository", model_repository, "--shard-size", str(SHARD)]
    args = [
        *common,
        "--input",
        "s3://inputs/ray/in",
        "--output",
        out,
        "--engine",
        "ray",
        "--ray-actors",
        "1",
        "--batch-size",
        "1",
    ]  # fmt: skip  (batch size 1: slow enough to be killed mid-run)

    child = score_process(*args)
    deadline = time.monotonic() + 240
    while len(recorded_shards(store, manifest)) < 2 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL, child.stderr.read() if child.stderr else ""
    killed = recorded_shards(store, manifest)
    assert 2 <= len(killed) < SHARDS, "the child must die with work left to do"
    assert "ray/out.jsonl" not in store.keys("results", "ray/")

    rerun = score_process(*args)
    _, stderr = rerun.communicate(timeout=400)
    assert rerun.returncode == 0, stderr
    assert f"this run scored {COUNT - len(killed) * SHARD} " in stderr
    assert f"{len(killed)} of {SHARDS} shards were already done" in stderr
    rows = object_rows(store, out)
    assert ids(rows) == [f"{i:04d}.png" for i in range(COUNT)]  # no duplicates, no gaps, in order
    # every shard was written by a Ray worker process, never by either driver: rows did not travel to them
    writers = {int(entry["writer"].split("@")[0]) for entry in recorded_shards(store, manifest).values()}
    assert writers and not writers & {child.pid, rerun.pid}

    assert score(*common, "--input", tmp_path / "in", "--output", tmp_path / "local.jsonl") == 0
    assert without_path(rows) == without_path(read_rows(tmp_path / "local.jsonl"))
