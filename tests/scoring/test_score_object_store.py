"""`pixelserve score` with its inputs and outputs in S3 (moto's real S3 API server), local engine: the same rows
as from local files, the work directory in the store beside the output, and resume from what the store holds."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tarfile
import time

import numpy as np
import pytest

from pixelserve.service.scoring.cli import EXIT_FAILED, EXIT_SOME_INPUTS_FAILED, EXIT_USAGE
from pixelserve.service.scoring.location import ATTEMPTS_VARIABLE
from pixelserve.service.scoring.manifest import MANIFEST, work_dir_for
from tests.scoring.conftest import ids, object_rows, read_rows, score, score_process, without_path
from tests.scoring.test_score_errors import write_mixed_folder
from tests.service.models import CLASSIFIER, DENOISER, encode_image, random_images

WORK = "run/scores.parquet.work"


def test_a_prefix_of_images_scores_into_the_store_as_a_local_folder_does(model_repository, store, tmp_path,
                                                                         capsys) -> None:  # fmt: skip
    expected = write_mixed_folder(tmp_path / "mixed")
    store.upload_tree(tmp_path / "mixed", "inputs", "batch/mixed")
    prefix, out = "s3://inputs/batch/mixed", "s3://results/run/scores.parquet"
    common = ["--model", CLASSIFIER, "--model-repository", model_repository, "--shard-size", "4"]
    local_out = tmp_path / "local.parquet"
    assert score(*common, "--input", tmp_path / "mixed", "--output", local_out) == EXIT_SOME_INPUTS_FAILED

    assert score(*common, "--input", prefix, "--output", out) == EXIT_SOME_INPUTS_FAILED

    local, rows = read_rows(local_out), object_rows(store, out)
    assert ids(rows) == sorted(expected) and without_path(rows) == without_path(local)
    assert [row["path"] for row in rows] == [f"{prefix}/{row['id']}" for row in rows]
    errors = [json.loads(line) for line in store.read("results", "run/scores.errors.jsonl").decode().splitlines()]
    assert [e["id"] for e in errors] == sorted(name for name, fragment in expected.items() if fragment)
    shards = [f"{WORK}/shard-{i:06d}.jsonl" for i in range(3)]
    assert store.keys("results", WORK) == sorted([f"{WORK}/manifest.json", *shards])
    manifest = json.loads(store.read("results", f"{WORK}/manifest.json"))
    assert manifest["job"]["input"]["path"] == prefix
    assert {s["writer"] for s in manifest["shards"].values()} == {f"{os.getpid()}@{socket.gethostname()}"}
    assert not list(tmp_path.rglob("scores*"))  # neither output nor work directory on local disk

    # a shard object the manifest does not list (a run killed between the two) is scored and written again
    del manifest["shards"]["1"]
    store.client.put_object(Bucket="results", Key=f"{WORK}/manifest.json", Body=json.dumps(manifest).encode())
    store.client.put_object(Bucket="results", Key=shards[1], Body=b'{"id": "stale"}\n')
    capsys.readouterr()
    assert score(*common, "--input", prefix, "--output", out) == EXIT_SOME_INPUTS_FAILED
    report = capsys.readouterr().err
    assert "this run scored 4 " in report and "2 of 3 shards were already done" in report
    assert object_rows(store, out) == rows

    # another job into the same output is refused; --overwrite starts it afresh in the store
    assert score(*common, "--input", prefix, "--output", out, "--top-k", "1") == EXIT_USAGE
    assert "belongs to a different scoring job" in capsys.readouterr().err
    assert score(*common, "--input", prefix, "--output", out, "--top-k", "1", "--overwrite") == EXIT_SOME_INPUTS_FAILED
    assert "0 of 3 shards were already done" in capsys.readouterr().err
    assert {len(row["top_labels"]) for row in object_rows(store, out) if row["status"] == "ok"} == {1}


def test_tar_table_and_npz_objects_give_the_rows_of_their_local_files(model_repository, store, tmp_path) -> None:
    images = random_images(10, seed=11)
    (tmp_path / "images").mkdir()
    for i, pixels in enumerate(images):
        (tmp_path / "images" / f"{i:02d}.png").write_bytes(encode_image(pixels))
    with tarfile.open(tmp_path / "images.tar.gz", "w:gz") as archive:
        archive.add(tmp_path / "images", arcname="images")
    (tmp_path / "paths.csv").write_text("path\n" + "".join(f"images/{i:02d}.png\n" for i in range(10)))
    np.savez(tmp_path / "data.npz", x_test=images)
    store.upload_tree(tmp_path, "inputs", "kinds")
    common = ["--model", CLASSIFIER, "--model-repository", model_repository, "--shard-size", "3"]

    for name in ("images.tar.gz", "paths.csv", "data.npz"):
        local, remote = tmp_path / f"{name}.jsonl", f"s3://results/kinds/{name}.jsonl"
        assert score(*common, "--input", tmp_path / name, "--output", local) == 0, name
        assert score(*common, "--input", f"s3://inputs/kinds/{name}", "--output", remote) == 0, name
        assert object_rows(store, remote) == read_rows(local), name  # paths too: member names, cells, none
        assert len(read_rows(local)) == 10

    # a local table may name objects: its cells are URIs, read from the store
    cells = [f"s3://inputs/kinds/images/{i:02d}.png" for i in range(10)]
    (tmp_path / "uris.csv").write_text("path\n" + "".join(f"{cell}\n" for cell in cells))
    assert score(*common, "--input", tmp_path / "uris.csv", "--output", tmp_path / "uris.jsonl") == 0
    rows = read_rows(tmp_path / "uris.jsonl")
    assert [row["path"] for row in rows] == cells
    assert without_path(rows) == without_path(read_rows(tmp_path / "paths.csv.jsonl"))


def test_a_missing_prefix_or_a_denoise_without_local_images_dir_is_a_usage_error(model_repository, store, tmp_path,
                                                                                  capsys) -> None:  # fmt: skip
    common = ["--model-repository", model_repository, "--output", "s3://results/bad/out.jsonl"]
    assert score("--model", CLASSIFIER, "--input", "s3://inputs/nothing-here", *common) == EXIT_USAGE
    assert "input s3://inputs/nothing-here does not exist" in capsys.readouterr().err

    store.client.put_object(Bucket="inputs", Key="noisy/0.png", Body=encode_image(random_images(1)[0]))
    assert score("--model", DENOISER, "--input", "s3://inputs/noisy", *common) == EXIT_USAGE
    assert "give a local --images-dir" in capsys.readouterr().err
    assert store.keys("results", "bad/") == []
    assert score("--model", DENOISER, "--input", "s3://inputs/noisy", *common, "--images-dir", tmp_path / "png") == 0
    assert [p.name for p in (tmp_path / "png").iterdir()] == ["0.png"]


@pytest.mark.slow  # about a minute: the child gives up only after the backend's own retries (tens of seconds)
def test_an_input_store_outage_stops_the_job_without_error_rows_and_a_rerun_finishes_it(model_repository, store,
                                                                                        tmp_path) -> None:  # fmt: skip
    """The output is local, so only the reads fail: those must stop the job, not be recorded as error rows."""
    count, shard = 300, 10
    (tmp_path / "in").mkdir()
    for i, pixels in enumerate(random_images(count, seed=4)):
        (tmp_path / "in" / f"{i:03d}.png").write_bytes(encode_image(pixels))
    store.upload_tree(tmp_path / "in", "inputs", "outage")
    out = tmp_path / "out.jsonl"
    args = ["--model", CLASSIFIER, "--model-repository", model_repository, "--input", "s3://inputs/outage",
            "--output", out, "--shard-size", str(shard), "--batch-size", "1"]  # fmt: skip

    def recorded() -> dict:
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
            return json.loads((work_dir_for(out) / MANIFEST).read_text())["shards"]
        return {}

    child = score_process(*args, env={**os.environ, ATTEMPTS_VARIABLE: "1"})  # give up on the outage quickly
    deadline = time.monotonic() + 120
    while len(recorded()) < 2 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    store.relay.cut()
    time.sleep(0.3)
    store.relay.cut()  # again: a connection accepted just as the first cut came would otherwise hang till timeout
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == EXIT_FAILED, stderr
    assert stderr.splitlines()[-1].startswith("pixelserve score: StoreUnavailable: s3://inputs/outage")
    done = recorded()
    assert 2 <= len(done) < count // shard and all(entry["errors"] == 0 for entry in done.values())
    assert not out.exists()

    store.relay.mend()
    rerun = score_process(*args)
    _, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    assert f"{len(done)} of {count // shard} shards were already done" in stderr
    rows = read_rows(out)
    assert ids(rows) == [f"{i:03d}.png" for i in range(count)] and {row["status"] for row in rows} == {"ok"}
