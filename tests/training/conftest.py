"""Tiny synthetic datasets in the Keras .npz layout, written into a temporary data directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.prerequisites import require

SHARED_DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"


def latest(model_dir: Path) -> Path:
    """The highest version directory of a committed model."""
    return max((p for p in model_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def write_npz(path: Path, shape: tuple[int, ...], n_train: int, n_test: int, classes: int = 10, seed: int = 0) -> None:
    """Images whose mean brightness encodes the class, so a model can learn something in one step."""
    rng = np.random.default_rng(seed)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % classes
        base = (y * (200 // classes) + 20).astype(np.float32)
        x = np.clip(base.reshape((n,) + (1,) * len(shape)) + rng.normal(0, 20, (n, *shape)), 0, 255)
        return x.astype(np.uint8), y.astype(np.uint8)

    x_train, y_train = split(n_train)
    x_test, y_test = split(n_test)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_npz(root / "mnist.npz", (28, 28), 96, 64)
    write_npz(root / "fashion_mnist.npz", (28, 28), 96, 64, seed=1)
    write_npz(root / "cifar10.npz", (32, 32, 3), 96, 64, seed=2)
    return root


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The real datasets; CI always has them beside the checkout."""
    data_dir = Path(__import__("os").environ.get("PIXELSERVE_DATA_DIR", SHARED_DATASETS))
    require((data_dir / "mnist.npz").exists(), f"real datasets not found in {data_dir}")
    return data_dir
