"""Real data through real models: the MNIST test set from mnist.npz and CIFAR-10 test JPEGs from the tar.gz."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest

from pixelserve.modelspec import SPEC_FILE, ModelSpec
from pixelserve.service.core import images
from tests.scoring.conftest import COMMITTED_MODELS, ids, read_rows, require, score
from tests.service.models import CLASSIFIER_RGB, reference_session

CIFAR_PER_CLASS = 30


def latest_version(name: str) -> Path:
    model = require(COMMITTED_MODELS / name, f"the committed model {name}")
    return max((p for p in model.iterdir() if (p / SPEC_FILE).exists()), key=lambda p: int(p.name))


@pytest.mark.slow
def test_mnist_test_set_accuracy_equals_the_accuracy_in_model_json(shared_datasets, tmp_path) -> None:
    """Batches of 500, as training's evaluation ran them (training/evaluate.py EVAL_BATCH): the same graph on the
    same inputs in the same batches, so the accuracy must be equal, not merely close."""
    version = latest_version("mnist-classifier")
    spec = ModelSpec.load(version / SPEC_FILE)
    out = tmp_path / "mnist.parquet"

    assert score("--model", f"mnist-classifier:{spec.version}", "--model-repository", COMMITTED_MODELS,
                 "--input", shared_datasets / "mnist.npz", "--output", out, "--device", "cpu",
                 "--shard-size", "500", "--batch-size", "500") == 0  # fmt: skip

    rows = read_rows(out)
    with np.load(shared_datasets / "mnist.npz") as data:
        labels = data["y_test"]
    assert ids(rows) == list(range(len(labels))) == list(range(10_000))
    assert all(r["status"] == "ok" and r["version"] == spec.version for r in rows)
    accuracy = float(np.mean([r["top_indices"][0] for r in rows] == labels))
    assert spec.quality is not None
    assert accuracy == spec.quality.metrics["accuracy"]


@pytest.fixture(scope="module")
def cifar_test_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few hundred real CIFAR-10 test JPEGs (the first per class in archive order), as a folder tree."""
    archive = require(Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz",
                      "the real CIFAR-10 archive")  # fmt: skip
    root = tmp_path_factory.mktemp("cifar") / "test"
    taken: dict[str, int] = {}
    with tarfile.open(archive, "r|gz") as stream:
        for member in stream:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) < 3 or parts[-3] != "test":
                continue
            label = parts[-2]
            if taken.get(label, 0) >= CIFAR_PER_CLASS:
                if len(taken) == 10 and all(n >= CIFAR_PER_CLASS for n in taken.values()):
                    break
                continue
            taken[label] = taken.get(label, 0) + 1
            target = root / label / parts[-1]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(stream.extractfile(member).read())
    assert sum(taken.values()) == 10 * CIFAR_PER_CLASS
    return root


def test_cifar_folder_and_tar_gz_score_the_same_and_match_onnxruntime(
    cifar_test_images: Path, model_repository: Path, tmp_path: Path
) -> None:
    """With the committed cifar10-classifier when present (then accuracy is checked too), else the tiny RGB model."""
    real = (COMMITTED_MODELS / "cifar10-classifier").exists()
    repository = COMMITTED_MODELS if real else model_repository
    name = "cifar10-classifier" if real else CLASSIFIER_RGB
    with tarfile.open(tmp_path / "cifar.tar.gz", "w:gz") as archive:
        archive.add(cifar_test_images, arcname="test")
    common = ["--model", name, "--model-repository", repository, "--device", "cpu", "--shard-size", "64"]
    assert score(*common, "--input", cifar_test_images, "--output", tmp_path / "folder.parquet") == 0
    assert score(*common, "--input", tmp_path / "cifar.tar.gz", "--output", tmp_path / "tar.parquet") == 0

    folder, tar = read_rows(tmp_path / "folder.parquet"), read_rows(tmp_path / "tar.parquet")
    assert len(folder) == 10 * CIFAR_PER_CLASS
    assert ids(tar) == [f"test/{i}" for i in ids(folder)]
    assert [r["top_probabilities"] for r in tar] == [r["top_probabilities"] for r in folder]

    version = max(int(p.name) for p in (repository / name).iterdir() if p.name.isdigit())
    spec = ModelSpec.load(repository / name / str(version) / SPEC_FILE)
    batch = np.stack(
        [images.decode_image(Path(r["path"]).read_bytes(), spec.preprocessing, max_pixels=1 << 24) for r in folder]
    )
    (expected,) = reference_session(repository, name, version).run(["probabilities"], {"image": batch})
    assert [r["top_indices"][0] for r in folder] == expected.argmax(axis=1).tolist()
    np.testing.assert_allclose([r["probability"] for r in folder], expected.max(axis=1), rtol=1e-5)
    if real:
        accuracy = np.mean([r["label"] == r["id"].split("/")[0] for r in folder])
        assert accuracy >= 0.8
