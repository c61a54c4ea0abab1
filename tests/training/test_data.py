"""Dataset loaders: npz, image folders, archives, the cache, and clear errors for bad inputs."""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixelserve.training.data import DatasetError, load_dataset
from tests.training.conftest import write_npz


def _write_folder(root: Path, classes: list[str], per_class: int, size: tuple[int, int] = (8, 8)) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for i, cls in enumerate(classes):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for j in range(per_class):
                pixels = np.full((*size, 3), 40 * i, np.uint8) + rng.integers(0, 10, (*size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{j:03d}.png")


def test_npz_in_data_dir_loads_in_keras_layout(tmp_path: Path) -> None:
    write_npz(tmp_path / "mnist.npz", (28, 28), 20, 10)
    data = load_dataset("mnist", tmp_path, tmp_path / "cache")
    assert data.x_train.shape == (20, 28, 28, 1) and data.x_train.dtype == np.uint8
    assert data.y_test.shape == (10,) and data.labels == [str(i) for i in range(10)]
    assert len(data.sha256) == 64


def test_image_folder_loads_with_sorted_class_labels(tmp_path: Path) -> None:
    _write_folder(tmp_path / "shapes", ["square", "circle"], 3)
    data = load_dataset(str(tmp_path / "shapes"), None, tmp_path / "cache")
    assert data.labels == ["circle", "square"]
    assert data.x_train.shape == (6, 8, 8, 3)
    assert sorted(data.y_train.tolist()) == [0, 0, 0, 1, 1, 1]
    # circle (index 0) was written with class offset 40, square with 0: labels follow folder names.
    assert data.x_train[data.y_train == 0].mean() > data.x_train[data.y_train == 1].mean()


def test_tar_gz_archive_loads_and_second_load_hits_the_cache(tmp_path: Path) -> None:
    _write_folder(tmp_path / "tree" / "pets", ["cat", "dog"], 4)
    archive = tmp_path / "pets.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "tree" / "pets", arcname="pets")
    first = load_dataset(str(archive), None, tmp_path / "cache")
    assert first.x_test.shape == (8, 8, 8, 3) and first.labels == ["cat", "dog"]
    assert len(list((tmp_path / "cache" / "datasets").glob("*.npz"))) == 1
    second = load_dataset(str(archive), None, tmp_path / "cache")
    np.testing.assert_array_equal(first.x_train, second.x_train)
    assert second.sha256 == first.sha256


def test_missing_dataset_names_the_problem(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="neither a known dataset"):
        load_dataset(str(tmp_path / "nope"), None, tmp_path / "cache")


def test_corrupt_npz_names_the_path_and_the_expected_layout(tmp_path: Path) -> None:
    (tmp_path / "mnist.npz").write_bytes(b"this is not a zip file")
    with pytest.raises(DatasetError, match=r"mnist\.npz: not a readable \.npz.*x_train"):
        load_dataset("mnist", tmp_path, tmp_path / "cache")


def test_npz_with_missing_arrays_is_rejected(tmp_path: Path) -> None:
    np.savez(tmp_path / "mnist.npz", x_train=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DatasetError, match=r"missing arrays \['y_train', 'x_test', 'y_test'\]"):
        load_dataset("mnist", tmp_path, tmp_path / "cache")


def test_corrupt_archive_names_the_path(tmp_path: Path) -> None:
    (tmp_path / "cifar10.tar.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(DatasetError, match=r"cifar10\.tar\.gz: not a readable tar archive"):
        load_dataset("cifar10", tmp_path, tmp_path / "cache")


def test_undecodable_image_in_folder_names_the_file(tmp_path: Path) -> None:
    _write_folder(tmp_path / "pets", ["cat", "dog"], 2)
    (tmp_path / "pets" / "train" / "cat" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DatasetError, match=r"train/cat/broken\.png: cannot decode image"):
        load_dataset(str(tmp_path / "pets"), None, tmp_path / "cache")


def test_folder_without_train_split_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "flat").mkdir()
    buffer = io.BytesIO()
    Image.new("L", (4, 4)).save(buffer, "PNG")
    (tmp_path / "flat" / "a.png").write_bytes(buffer.getvalue())
    with pytest.raises(DatasetError, match=r"no images under train/<class>/"):
        load_dataset(str(tmp_path / "flat"), None, tmp_path / "cache")


def test_real_mnist_matches_its_published_checks(shared_datasets: Path, tmp_path: Path) -> None:
    data = load_dataset("mnist", shared_datasets, tmp_path / "cache")
    assert data.x_train.shape == (60000, 28, 28, 1) and data.x_test.shape == (10000, 28, 28, 1)
    assert data.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert data.y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert abs(float(data.x_train.mean()) - 33.318) < 0.01


@pytest.mark.slow
def test_real_cifar10_archive_decodes_once_then_loads_from_cache_under_2s(
    shared_datasets: Path, tmp_path: Path
) -> None:
    first = load_dataset("cifar10", shared_datasets, tmp_path / "cache")
    assert first.x_train.shape == (50000, 32, 32, 3) and first.x_test.shape == (10000, 32, 32, 3)
    assert np.bincount(first.y_test).tolist() == [1000] * 10
    assert first.labels[0] == "airplane" and first.labels[9] == "truck"
    started = time.perf_counter()
    second = load_dataset("cifar10", shared_datasets, tmp_path / "cache")
    assert time.perf_counter() - started < 2.0
    assert second.sha256 == first.sha256
