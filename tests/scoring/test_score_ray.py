"""`--engine ray` on a local Ray: the same rows, errors file and resume semantics as the local engine."""

from __future__ import annotations

import json

import pytest

from pixelserve.service.scoring.cli import EXIT_SOME_INPUTS_FAILED
from pixelserve.service.scoring.manifest import MANIFEST, work_dir_for
from tests.scoring.conftest import read_rows, score
from tests.scoring.test_score_errors import write_mixed_folder
from tests.service.models import CLASSIFIER

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
