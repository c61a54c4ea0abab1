"""Every source and output format through the real `pixelserve score`, checked against in-process onnxruntime."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pixelserve.service.core.images import encode_png
from tests.scoring.conftest import ids, read_rows, score
from tests.service.models import (
    AUTOENCODER,
    CLASSIFIER,
    DENOISER,
    LABELS,
    encode_image,
    random_images,
    reference_session,
)

COUNT = 30


@pytest.fixture
def images() -> np.ndarray:
    return random_images(COUNT, channels=1, seed=7)


def write_folder(root: Path, images: np.ndarray) -> Path:
    for i, pixels in enumerate(images):
        path = root / f"class{i % 3}" / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_image(pixels))
    return root


def folder_order(images: np.ndarray) -> list[int]:
    """The folder source lists sorted relative paths: class0/..., class1/..., class2/..."""
    return sorted(range(len(images)), key=lambda i: (f"class{i % 3}", f"{i:04d}"))


def test_npz_classification_matches_onnxruntime_row_for_row(model_repository, images, tmp_path) -> None:
    np.savez(tmp_path / "data.npz", x_test=images[..., 0], y_test=np.zeros(COUNT))
    out = tmp_path / "out.parquet"

    code = score("--model", CLASSIFIER, "--model-repository", model_repository, "--input", tmp_path / "data.npz",
                 "--output", out, "--top-k", "2", "--shard-size", "7")  # fmt: skip

    assert code == 0
    rows = read_rows(out)
    assert ids(rows) == list(range(COUNT))
    (probabilities,) = reference_session(model_repository, CLASSIFIER).run(["probabilities"], {"image": images})
    for row, expected in zip(rows, probabilities, strict=True):
        order = np.argsort(-expected, kind="stable")[:2]
        assert row["status"] == "ok" and row["error"] is None
        assert (row["model"], row["version"]) == (CLASSIFIER, 1)
        assert row["top_indices"] == order.tolist()
        assert row["top_labels"] == [LABELS[i] for i in order]
        assert row["label"] == LABELS[order[0]]
        np.testing.assert_allclose(row["top_probabilities"], expected[order], rtol=1e-6)
        assert row["ood_score"] is not None and row["is_ood"] in (True, False)  # the paired autoencoder ran


def test_folder_tar_and_tables_give_the_same_rows_as_the_npz(model_repository, images, tmp_path) -> None:
    folder = write_folder(tmp_path / "images", images)
    with tarfile.open(tmp_path / "images.tar.gz", "w:gz") as archive:
        archive.add(folder, arcname=".")
    order = folder_order(images)
    relative = [f"class{i % 3}/{i:04d}.png" for i in order]
    pq.write_table(pa.table({"path": [f"images/{p}" for p in relative]}), tmp_path / "paths.parquet")
    (tmp_path / "paths.csv").write_text("path\n" + "".join(f"images/{p}\n" for p in relative))
    blobs = [encode_image(images[i]) for i in order]
    pq.write_table(pa.table({"image": pa.array(blobs, pa.binary())}), tmp_path / "blobs.parquet")
    np.savez(tmp_path / "data.npz", pixels=images[order])

    results = {}
    for source in ("images", "images.tar.gz", "paths.parquet", "paths.csv", "blobs.parquet", "data.npz"):
        out = tmp_path / f"{source}.out.jsonl"
        code = score("--model", CLASSIFIER, "--model-repository", model_repository, "--input", tmp_path / source,
                     "--output", out, "--npz-key", "pixels", "--shard-size", "8")  # fmt: skip
        assert code == 0, source
        results[source] = read_rows(out)

    assert ids(results["images"]) == relative
    assert ids(results["images.tar.gz"]) == [f"./{p}" for p in relative]
    assert ids(results["paths.csv"]) == list(range(COUNT))
    assert [r["path"] for r in results["paths.csv"]] == [f"images/{p}" for p in relative]
    predictions = {
        source: [(r["top_indices"], r["top_probabilities"], r["ood_score"]) for r in rows]
        for source, rows in results.items()
    }
    # lossless PNG or the raw array: the same pixels reach the model, so every number is equal
    assert all(p == predictions["data.npz"] for p in predictions.values())


def test_csv_and_parquet_outputs_hold_the_jsonl_rows(model_repository, images, tmp_path) -> None:
    np.savez(tmp_path / "data.npz", x_test=images)
    rows = {}
    for suffix in ("jsonl", "csv", "parquet"):
        out = tmp_path / f"out.{suffix}"
        assert score("--model", CLASSIFIER, "--model-repository", model_repository, "--input",
                     tmp_path / "data.npz", "--output", out) == 0  # fmt: skip
        rows[suffix] = read_rows(out)
    assert rows["parquet"] == rows["jsonl"]
    first = rows["csv"][0]
    assert list(first) == list(rows["jsonl"][0])
    assert int(first["id"]) == 0 and first["status"] == "ok" and first["error"] == ""
    import json

    assert json.loads(first["top_probabilities"]) == rows["jsonl"][0]["top_probabilities"]


def test_reconstruct_reports_error_and_anomaly_flag(model_repository, images, tmp_path) -> None:
    np.savez(tmp_path / "data.npz", x_test=images)
    out = tmp_path / "out.parquet"
    assert score("--model", AUTOENCODER, "--model-repository", model_repository, "--input", tmp_path / "data.npz",
                 "--output", out) == 0  # fmt: skip
    session = reference_session(model_repository, AUTOENCODER)
    (errors,) = session.run(["reconstruction_error"], {"image": images})
    rows = read_rows(out)
    np.testing.assert_allclose([r["reconstruction_error"] for r in rows], errors, rtol=1e-6)
    threshold = rows[0]["anomaly_threshold"]
    assert threshold is not None
    assert [r["is_anomaly"] for r in rows] == [bool(e > threshold) for e in errors]
    assert any(r["is_anomaly"] for r in rows) and not all(r["is_anomaly"] for r in rows)


def test_encode_writes_the_latent(model_repository, images, tmp_path) -> None:
    np.savez(tmp_path / "data.npz", x_test=images)
    out = tmp_path / "out.jsonl"
    assert score("--model", AUTOENCODER, "--task", "encode", "--model-repository", model_repository, "--input",
                 tmp_path / "data.npz", "--output", out) == 0  # fmt: skip
    (latent,) = reference_session(model_repository, AUTOENCODER).run(["latent"], {"image": images})
    np.testing.assert_allclose([r["latent"] for r in read_rows(out)], latent, rtol=1e-6)


def test_denoise_writes_one_png_per_input_into_the_images_dir(model_repository, images, tmp_path) -> None:
    folder = write_folder(tmp_path / "noisy", images[:6])
    out = tmp_path / "clean.parquet"
    assert score("--model", DENOISER, "--model-repository", model_repository, "--input", folder,
                 "--output", out) == 0  # fmt: skip
    (expected,) = reference_session(model_repository, DENOISER).run(["reconstruction"], {"image": images[:6]})
    rows = read_rows(out)
    assert ids(rows) == sorted(f"class{i % 3}/{i:04d}.png" for i in range(6))
    for row in rows:
        index = int(row["id"][-8:-4])
        path = Path(row["output_path"])
        assert path == tmp_path / "clean-images" / row["id"]
        assert path.read_bytes() == encode_png(expected[index])
        assert np.asarray(Image.open(io.BytesIO(path.read_bytes()))).shape == (8, 8)
