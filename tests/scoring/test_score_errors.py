"""Bad inputs cost a row each, never the job; an output of one job is never mixed with another's."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from PIL import Image

from pixelserve.service.scoring.cli import EXIT_SOME_INPUTS_FAILED, EXIT_USAGE
from pixelserve.service.scoring.manifest import work_dir_for
from tests.scoring.conftest import ROOT, ids, read_rows, score
from tests.service.models import AUTOENCODER, CLASSIFIER, CLASSIFIER_RGB, encode_image, random_images


def write_mixed_folder(root):
    """Six good 8x8 PNGs plus every kind of bad or odd file; returns {name: expected error fragment or None}."""
    root.mkdir()
    images = random_images(6, seed=3)
    expected: dict[str, str | None] = {}
    for i, pixels in enumerate(images):
        (root / f"good{i}.png").write_bytes(encode_image(pixels))
        expected[f"good{i}.png"] = None
    (root / "garbage.png").write_bytes(b"definitely not an image")
    expected["garbage.png"] = "unsupported image format"
    (root / "empty.png").write_bytes(b"")
    expected["empty.png"] = "unsupported image format"
    (root / "truncated.png").write_bytes(encode_image(images[0])[:40])
    expected["truncated.png"] = "not a valid PNG"
    (root / "text.jpg").write_text("hello")
    expected["text.jpg"] = "unsupported image format"
    odd = np.random.default_rng(1).integers(0, 256, (13, 20), dtype=np.uint8)
    (root / "odd-size.png").write_bytes(encode_image(odd))
    expected["odd-size.png"] = None  # resized, as the server does
    Image.new("L", (5000, 5000)).save(root / "huge.png")  # 25 M pixels, over max_image_pixels (16.7 M)
    expected["huge.png"] = "too large"
    (root / "notes.txt").write_text("not an input: no image suffix")
    return expected


def test_corrupt_and_odd_files_become_error_rows_and_the_job_finishes(model_repository, tmp_path) -> None:
    expected = write_mixed_folder(tmp_path / "mixed")
    out = tmp_path / "out.jsonl"

    code = score("--model", CLASSIFIER, "--model-repository", model_repository, "--input", tmp_path / "mixed",
                 "--output", out, "--shard-size", "4")  # fmt: skip

    assert code == EXIT_SOME_INPUTS_FAILED
    rows = read_rows(out)
    assert ids(rows) == sorted(expected)  # every input once, notes.txt is not an input
    for row in rows:
        fragment = expected[row["id"]]
        if fragment is None:
            assert row["status"] == "ok" and row["error"] is None and len(row["top_indices"]) == 3
        else:
            assert row["status"] == "error" and fragment in row["error"], row
            assert row["top_indices"] is None and row["label"] is None
    errors = [json.loads(line) for line in (tmp_path / "out.errors.jsonl").read_text().splitlines()]
    assert [e["id"] for e in errors] == sorted(name for name, fragment in expected.items() if fragment)
    assert all(e["error"] and e["path"].endswith(e["id"]) for e in errors)


def test_exact_size_rejects_images_the_server_would_resize(model_repository, tmp_path) -> None:
    expected = write_mixed_folder(tmp_path / "mixed")
    out = tmp_path / "out.jsonl"
    assert score("--model", CLASSIFIER, "--model-repository", model_repository, "--input", tmp_path / "mixed",
                 "--output", out, "--exact-size") == EXIT_SOME_INPUTS_FAILED  # fmt: skip
    rows = {row["id"]: row for row in read_rows(out)}
    assert rows["odd-size.png"]["status"] == "error"
    assert "20x13" in rows["odd-size.png"]["error"] and "8x8" in rows["odd-size.png"]["error"]
    assert all(rows[f"good{i}.png"]["status"] == "ok" for i in range(6))
    assert len(rows) == len(expected)


def test_npz_of_the_wrong_shape_fails_every_row_with_the_reason(model_repository, tmp_path) -> None:
    np.savez(tmp_path / "data.npz", x_test=random_images(5, channels=3))
    out = tmp_path / "out.jsonl"
    assert score("--model", CLASSIFIER, "--model-repository", model_repository, "--input", tmp_path / "data.npz",
                 "--output", out) == EXIT_SOME_INPUTS_FAILED  # fmt: skip
    rows = read_rows(out)
    assert ids(rows) == [0, 1, 2, 3, 4]
    assert all(r["status"] == "error" and "expected a tensor of shape [N, 8, 8, 1]" in r["error"] for r in rows)


def test_rerun_with_another_model_or_task_into_the_same_output_is_refused(model_repository, tmp_path, capsys) -> None:
    np.savez(tmp_path / "data.npz", x_test=random_images(10))
    out = tmp_path / "out.parquet"
    common = ["--model-repository", model_repository, "--input", tmp_path / "data.npz", "--output", out]
    assert score("--model", AUTOENCODER, "--task", "reconstruct", *common) == 0
    before = out.read_bytes()
    capsys.readouterr()

    assert score("--model", AUTOENCODER, "--task", "encode", *common) == EXIT_USAGE
    message = capsys.readouterr().err
    assert "belongs to a different scoring job" in message and "task: 'reconstruct' -> 'encode'" in message
    assert score("--model", CLASSIFIER, *common) == EXIT_USAGE
    message = capsys.readouterr().err
    assert "model: 'tiny-autoencoder' -> 'tiny-classifier'" in message and "--overwrite" in message
    assert out.read_bytes() == before

    assert score("--model", CLASSIFIER, *common, "--overwrite") == 0
    assert read_rows(out)[0]["model"] == CLASSIFIER


def test_unknown_model_and_unsupported_task_fail_before_any_output(model_repository, tmp_path, capsys) -> None:
    np.savez(tmp_path / "data.npz", x_test=random_images(3, channels=3))
    out = tmp_path / "out.jsonl"
    common = ["--model-repository", model_repository, "--input", tmp_path / "data.npz", "--output", out]
    assert score("--model", "no-such-model", *common) == EXIT_USAGE
    assert "ModelNotFound" in capsys.readouterr().err
    assert score("--model", CLASSIFIER_RGB, "--task", "encode", *common) == EXIT_USAGE
    assert "cannot encode" in capsys.readouterr().err
    assert not out.exists() and not work_dir_for(out).exists()


def score_without(modules: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    """`pixelserve score ARGS` in a child where `modules` cannot be imported, as without the [batch] extra."""
    program = (
        f"import sys; sys.modules.update(dict.fromkeys({modules!r}))\n"
        "from pixelserve.cli import main\n"
        f"raise SystemExit(main(['score', *{list(args)!r}]))"
    )
    return subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_without_the_batch_extra_ray_and_parquet_say_how_to_install_it(model_repository, tmp_path) -> None:
    np.savez(tmp_path / "data.npz", x_test=random_images(3))
    common = ["--model", CLASSIFIER, "--model-repository", str(model_repository), "--input", str(tmp_path / "data.npz")]
    missing = ["ray", "pyarrow", "tqdm"]

    ray = score_without(missing, *common, "--output", str(tmp_path / "out.jsonl"), "--engine", "ray")
    assert ray.returncode == EXIT_USAGE and "pip install 'pixelserve[batch]'" in ray.stderr
    parquet = score_without(missing, *common, "--output", str(tmp_path / "out.parquet"))
    assert parquet.returncode == EXIT_USAGE and "Parquet output needs pyarrow" in parquet.stderr
    jsonl = score_without(missing, *common, "--output", str(tmp_path / "out.jsonl"))  # no bar, same rows
    assert jsonl.returncode == 0, jsonl.stderr
    assert ids(read_rows(tmp_path / "out.jsonl")) == [0, 1, 2]
