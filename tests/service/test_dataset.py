"""`pixelserve dataset` over logs the payload log wrote from real core results: the folder tree the training
loader reads, labels people gave winning over predictions, filters, and the refusals."""

from __future__ import annotations

import base64
import csv
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from pixelserve.service.core.types import ImageInputs, ModelRef
from pixelserve.service.observe.payloads import PayloadLog, PayloadRecord
from pixelserve.service.observe.payloads.shards import read_rows, shard_files
from pixelserve.service.tools.dataset import EXIT_FAILED, EXIT_OK, EXIT_USAGE, class_folder
from pixelserve.service.tools.dataset import main as dataset
from pixelserve.training.data import load_dataset
from tests.service.models import AUTOENCODER, CLASSIFIER, LABELS, SIZE, encode_image, random_images
from tests.service.payload_support import varied_images


async def log_requests(core, directory: Path, images: np.ndarray, *, fmt: str = "parquet") -> list[dict]:
    """One-image classify requests (request ids req-0, req-1, ...) logged, and their rows read back."""
    with PayloadLog(directory, fmt=fmt) as log:  # type: ignore[arg-type]
        for i, image in enumerate(images):
            encoded = [encode_image(image)]
            result = await core.classify(ModelRef(CLASSIFIER), ImageInputs(encoded=encoded))
            log.offer(PayloadRecord.answered("rest", "classify", encoded, result, request_id=f"req-{i}"))
    return [row for path in shard_files(directory) for row in read_rows(path)]


def tree(root: Path) -> dict[str, Counter[str]]:
    """Images per class folder in each split."""
    return {split: Counter(p.parent.name for p in (root / split).glob("*/*.png")) for split in ("train", "test")}


def expected_split(counts: Counter[str], fraction: float = 0.2) -> dict[str, Counter[str]]:
    kept = {label: n for label, n in counts.items() if n >= 2}
    test = Counter({label: min(n - 1, max(1, round(n * fraction))) for label, n in kept.items()})
    return {"train": Counter({label: n - test[label] for label, n in kept.items()}), "test": test}


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


async def test_predictions_become_an_image_folder_the_training_loader_reads(
    core, tmp_path, model_repository, capsys
) -> None:
    rows = await log_requests(core, tmp_path / "log", varied_images(model_repository, 40))
    out = tmp_path / "dataset"
    assert dataset(["--input", str(tmp_path / "log"), "--output", str(out)]) == EXIT_OK

    predicted = Counter(row["label"] for row in rows)
    expected = expected_split(predicted)
    assert tree(out) == expected
    loaded = load_dataset(str(out), None, cache_dir=tmp_path / "cache")
    assert loaded.labels == sorted(expected["train"])
    assert loaded.image_shape == (SIZE, SIZE, 1)
    for split in ("train", "test"):
        got = Counter(loaded.labels[i] for i in getattr(loaded, f"y_{split}"))
        assert got == expected[split]
    first = rows[0]
    (path,) = out.glob(f"*/{first['label']}/{first['id']}.png")
    assert pixels(path).tobytes() == np.asarray(Image.open(io.BytesIO(first["image"]))).tobytes()
    printed = [line.split() for line in capsys.readouterr().out.splitlines()]
    for label in expected["train"]:
        assert [label, str(expected["train"][label]), str(expected["test"][label])] in printed
    assert len(expected["train"]) == len(LABELS)


async def test_labels_people_gave_win_over_predictions(core, tmp_path, model_repository) -> None:
    rows = await log_requests(core, tmp_path / "log", varied_images(model_repository, 20), fmt="jsonl")
    labels = tmp_path / "labels.csv"
    with labels.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "request_id", "label"])
        writer.writeheader()
        writer.writerows({"id": row["id"], "request_id": "", "label": "cat"} for row in rows[:6])
        writer.writerows({"id": "", "request_id": row["request_id"], "label": "dog"} for row in rows[6:9])
        writer.writerow({"id": "", "request_id": "req-unknown", "label": "dog"})
    out = tmp_path / "dataset"
    assert dataset(["--input", str(tmp_path / "log"), "--output", str(out), "--labels", str(labels)]) == EXIT_OK

    where = {p.stem: p.parent.name for p in out.glob("*/*/*.png")}
    assert all(where[row["id"]] == "cat" for row in rows[:6])
    assert all(where[row["id"]] == "dog" for row in rows[6:9])
    assert all(where[row["id"]] == row["label"] for row in rows[9:] if row["id"] in where)
    assert tree(out) == expected_split(Counter(["cat"] * 6 + ["dog"] * 3 + [row["label"] for row in rows[9:]]))

    only = tmp_path / "only-labelled"
    args = ["--input", str(tmp_path / "log"), "--output", str(only), "--labels", str(labels), "--label-by", "labels"]
    assert dataset(args) == EXIT_OK
    assert tree(only) == expected_split(Counter(["cat"] * 6 + ["dog"] * 3))
    load_dataset(str(only), None, cache_dir=tmp_path / "cache")


async def test_a_label_column_in_the_shards_and_min_probability(core, tmp_path, model_repository) -> None:
    rows = await log_requests(core, tmp_path / "log", varied_images(model_repository, 24), fmt="jsonl")
    (shard,) = shard_files(tmp_path / "log")
    filled = [{**json.loads(line), "true_label": "seven" if i < 4 else None} for i, line in enumerate(shard.open())]
    shard.write_text("".join(json.dumps(row) + "\n" for row in filled))  # what a person filling in labels does
    cut = float(np.median([row["probability"] for row in rows]))
    out = tmp_path / "dataset"
    args = ["--input", str(tmp_path / "log"), "--output", str(out), "--min-probability", str(cut)]
    assert dataset(args) == EXIT_OK

    sure = [row["label"] for row in rows[4:] if row["probability"] >= cut]
    assert tree(out) == expected_split(Counter(["seven"] * 4 + sure))


async def test_error_rows_are_skipped_and_several_models_need_model(core, tmp_path, model_repository, capsys) -> None:
    await log_requests(core, tmp_path / "log", varied_images(model_repository, 12))
    images = random_images(3, seed=9)
    with PayloadLog(tmp_path / "log", fmt="parquet") as log:
        log.offer(PayloadRecord.failed("rest", "classify", [encode_image(images[0])], ModelRef(CLASSIFIER), "bad"))
        result = await core.reconstruct(ModelRef(AUTOENCODER), ImageInputs(tensor=images))
        log.offer(PayloadRecord.answered("grpc", "reconstruct", images, result))
    out = tmp_path / "dataset"
    assert dataset(["--input", str(tmp_path / "log"), "--output", str(out)]) == EXIT_USAGE
    assert "several models" in capsys.readouterr().err and not out.exists()

    assert dataset(["--input", str(tmp_path / "log"), "--output", str(out), "--model", CLASSIFIER]) == EXIT_OK
    assert sum(tree(out)["train"].values()) + sum(tree(out)["test"].values()) <= 12
    assert "skipped 1 (error rows)" in capsys.readouterr().err
    autoencoder = tmp_path / "autoencoder"
    assert dataset(["--input", str(tmp_path / "log"), "--output", str(autoencoder), "--model", AUTOENCODER]) == 1
    assert "no class has the two images" in capsys.readouterr().err


async def test_an_output_that_is_not_empty_needs_overwrite(core, tmp_path, model_repository, capsys) -> None:
    await log_requests(core, tmp_path / "log", varied_images(model_repository, 12))
    out = tmp_path / "dataset"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    args = ["--input", str(tmp_path / "log"), "--output", str(out)]
    assert dataset(args) == EXIT_USAGE
    assert "--overwrite" in capsys.readouterr().err and not (out / "train").exists()
    assert dataset([*args, "--overwrite"]) == EXIT_OK
    before = tree(out)
    assert dataset([*args, "--overwrite", "--seed", "1"]) == EXIT_OK
    assert (out / "notes.txt").read_text() == "mine" and tree(out) == before  # same counts, nothing left over
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


async def test_images_of_several_sizes_are_prepared_as_the_server_did(core, tmp_path, model_repository, capsys) -> None:
    big = np.random.default_rng(1).integers(0, 256, (10, 12, 12, 1), dtype=np.uint8)
    await log_requests(core, tmp_path / "log", big)  # the server resized these to 8x8
    await log_requests(core, tmp_path / "log", varied_images(model_repository, 10))
    out = tmp_path / "dataset"
    assert dataset(["--input", str(tmp_path / "log"), "--output", str(out)]) == EXIT_FAILED
    assert "--model-repository" in capsys.readouterr().err
    args = ["--input", str(tmp_path / "log"), "--output", str(out), "--model-repository", str(model_repository)]
    assert dataset(args) == EXIT_OK
    assert load_dataset(str(out), None, cache_dir=tmp_path / "cache").image_shape == (SIZE, SIZE, 1)


def test_ids_and_labels_stay_inside_the_output(tmp_path) -> None:
    """Hand-edited logs: ids and labels become safe file and folder names."""
    image = encode_image(random_images(1)[0])
    rows: list[dict[str, Any]] = [
        {"id": f"../../escape-{i}", "model": CLASSIFIER, "version": 1, "status": "ok", "label": "t-shirt/top",
         "probability": 0.9, "image": base64.b64encode(image).decode()}
        for i in range(3)
    ]  # fmt: skip
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "part-1.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "dataset"
    assert dataset(["--input", str(tmp_path / "log"), "--output", str(out)]) == EXIT_OK
    written = list(tmp_path.rglob("*.png"))
    assert len(written) == 3 and all(p.is_relative_to(out) and p.parent.name == "t-shirt_top" for p in written)
    assert class_folder("..") == "_." and class_folder("") == "_"


@pytest.mark.parametrize("flags", [["--test-fraction", "0"], ["--test-fraction", "1"], ["--label-by", "guess"]])
def test_bad_flags_are_usage_errors(tmp_path, flags) -> None:
    assert dataset(["--input", str(tmp_path), "--output", str(tmp_path / "out"), *flags]) == EXIT_USAGE


def test_no_shards_is_a_usage_error(tmp_path, capsys) -> None:
    assert dataset(["--input", str(tmp_path), "--output", str(tmp_path / "out")]) == EXIT_USAGE
    assert "no .parquet or .jsonl shards" in capsys.readouterr().err and not (tmp_path / "out").exists()
