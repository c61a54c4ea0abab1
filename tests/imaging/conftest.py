"""The real MNIST test split, for the digit tests."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.prerequisites import require

from .support import SHARED_DATASETS


@pytest.fixture(scope="module")
def mnist() -> tuple[np.ndarray, np.ndarray]:
    data_dir = Path(os.environ.get("PIXELSERVE_DATA_DIR", SHARED_DATASETS))
    require((data_dir / "mnist.npz").exists(), f"real datasets not found in {data_dir}")
    with np.load(data_dir / "mnist.npz") as data:
        return data["x_test"], data["y_test"]
