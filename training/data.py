"""Dataset sources: a data directory (Keras-layout .npz, image-folder tree or .tar.gz), else the Keras download.

Every source ends as the same `Dataset`: uint8 NHWC arrays plus labels. Decoded image folders are cached as
.npz keyed by the source's path, size and mtime, so the second load of CIFAR-10 skips 60,000 JPEG decodes.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

log = logging.getLogger(__name__)

KNOWN_LABELS: dict[str, list[str]] = {
    "mnist": [str(i) for i in range(10)],
    "fashion_mnist": [
        "t-shirt/top",
        "trouser",
        "pullover",
        "dress",
        "coat",
        "sandal",
        "shirt",
        "sneaker",
        "bag",
        "ankle boot",
    ],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
CACHE_FORMAT = 1


class DatasetError(Exception):
    """A dataset is missing or unreadable; the message names the path and what was expected."""


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: np.ndarray  # uint8 (N, H, W, C)
    y_train: np.ndarray  # int64 (N,)
    x_test: np.ndarray
    y_test: np.ndarray
    labels: list[str]
    source: str
    sha256: str

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]


def default_data_dir() -> Path | None:
    value = os.environ.get("PIXELSERVE_DATA_DIR")
    return Path(value) if value else None


def default_cache_dir() -> Path:
    value = os.environ.get("PIXELSERVE_CACHE_DIR")
    return Path(value) if value else Path.home() / ".cache" / "pixelserve"


def load_dataset(name: str, data_dir: Path | None = None, cache_dir: Path | None = None) -> Dataset:
    """Load `name` (mnist, fashion_mnist, cifar10) or a path to the user's own image folder / archive."""
    data_dir = data_dir if data_dir is not None else default_data_dir()
    cache_dir = cache_dir if cache_dir is not None else default_cache_dir()
    as_path = Path(name).expanduser()
    if name not in KNOWN_LABELS:
        if not as_path.exists():
            known = ", ".join(sorted(KNOWN_LABELS))
            raise DatasetError(f"{name!r} is neither a known dataset ({known}) nor an existing path")
        return _load_path(as_path, as_path.name.split(".")[0], None, cache_dir)
    if data_dir is not None:
        for candidate in _candidates(data_dir, name):
            if candidate.exists():
                return _load_path(candidate, name, KNOWN_LABELS[name], cache_dir)
        log.warning("no %s under data dir %s; falling back to the Keras download", name, data_dir)
    return _load_keras(name)


def _candidates(data_dir: Path, name: str) -> Iterator[Path]:
    yield data_dir / f"{name}.npz"
    yield data_dir / name
    yield data_dir / f"{name}.tar.gz"
    yield data_dir / f"{name}.tgz"
    yield data_dir / f"{name}.tar"
    yield from sorted(data_dir.glob(f"{name}-*.tar.gz"))


def _load_path(path: Path, name: str, labels: list[str] | None, cache_dir: Path) -> Dataset:
    if path.suffix == ".npz":
        return _load_npz(path, name, labels)
    if path.is_dir() or _is_tar(path):
        return _load_folder_cached(path, name, labels, cache_dir)
    raise DatasetError(f"{path}: expected a .npz file, an image-folder directory or a .tar/.tar.gz archive")


def _is_tar(path: Path) -> bool:
    return path.is_file() and path.name.endswith((".tar", ".tar.gz", ".tgz"))


def _load_npz(path: Path, name: str, labels: list[str] | None) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in NPZ_KEYS if k not in data.files]
            if missing:
                raise DatasetError(f"{path}: missing arrays {missing}; expected keys {list(NPZ_KEYS)} (Keras layout)")
            arrays = {k: data[k] for k in NPZ_KEYS}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise DatasetError(
            f"{path}: not a readable .npz archive ({exc}); expected Keras layout {list(NPZ_KEYS)}"
        ) from exc
    x_train, x_test = _as_nhwc(arrays["x_train"], path), _as_nhwc(arrays["x_test"], path)
    y_train, y_test = arrays["y_train"].reshape(-1).astype(np.int64), arrays["y_test"].reshape(-1).astype(np.int64)
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise DatasetError(f"{path}: image and label counts differ")
    classes = int(max(y_train.max(), y_test.max())) + 1
    return Dataset(
        name,
        x_train,
        y_train,
        x_test,
        y_test,
        labels or [str(i) for i in range(classes)],
        str(path),
        file_sha256(path),
    )


def _as_nhwc(x: np.ndarray, path: Path) -> np.ndarray:
    if x.dtype != np.uint8:
        raise DatasetError(f"{path}: images must be uint8, got {x.dtype}")
    if x.ndim == 3:
        return x[..., None]
    if x.ndim == 4 and x.shape[-1] in (1, 3):
        return x
    raise DatasetError(f"{path}: images must be (N,H,W) or (N,H,W,1|3), got {x.shape}")


def _load_keras(name: str) -> Dataset:
    import keras  # the download path only; imported late so a data-dir load stays light

    loader = getattr(keras.datasets, name)
    try:
        (x_train, y_train), (x_test, y_test) = loader.load_data()
    except Exception as exc:
        raise DatasetError(
            f"could not download {name} with keras.datasets ({exc}); put {name}.npz or an image folder in a "
            "data directory and pass --data-dir (or set PIXELSERVE_DATA_DIR)"
        ) from exc
    x_train, x_test = _as_nhwc(x_train, Path(name)), _as_nhwc(x_test, Path(name))
    y_train, y_test = y_train.reshape(-1).astype(np.int64), y_test.reshape(-1).astype(np.int64)
    digest = arrays_sha256(x_train, y_train, x_test, y_test)
    return Dataset(name, x_train, y_train, x_test, y_test, KNOWN_LABELS[name], f"keras.datasets.{name}", digest)


def _load_folder_cached(path: Path, name: str, labels: list[str] | None, cache_dir: Path) -> Dataset:
    stat = path.stat()
    key = hashlib.sha256(f"{CACHE_FORMAT}:{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    cache = cache_dir / "datasets" / f"{name}-{key}.npz"
    if cache.exists():
        try:
            with np.load(cache, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                arrays = {k: data[k] for k in NPZ_KEYS}
            return Dataset(name, **arrays, labels=meta["labels"], source=str(path), sha256=meta["sha256"])
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            log.warning("ignoring unreadable cache %s", cache)
    dataset = _decode_folder(path, name, labels)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f"{cache.stem}.{os.getpid()}.tmp.npz")  # processes filling one cache do not collide
    meta = json.dumps({"labels": dataset.labels, "sha256": dataset.sha256})
    np.savez(tmp, meta=np.array(meta), **{k: getattr(dataset, k) for k in NPZ_KEYS})
    tmp.replace(cache)
    return dataset


def _decode_folder(path: Path, name: str, labels: list[str] | None) -> Dataset:
    """Decode `train/<class>/*` and `test/<class>/*` from a directory or a tar archive."""
    files: dict[str, dict[str, list[tuple[str, bytes]]]] = {"train": {}, "test": {}}
    for rel, read in _walk(path):
        parts = Path(rel).parts
        # Accept an optional top-level folder (archive/train/<class>/file).
        for i in range(len(parts) - 2):
            if parts[i] in files and len(parts) - i == 3 and Path(parts[-1]).suffix.lower() in IMAGE_SUFFIXES:
                files[parts[i]].setdefault(parts[i + 1], []).append((rel, read()))
                break
    for split in ("train", "test"):
        if not files[split]:
            raise DatasetError(f"{path}: no images under {split}/<class>/; expected train/<class>/* and test/<class>/*")
    classes = sorted(files["train"])
    if sorted(files["test"]) != classes:
        raise DatasetError(f"{path}: train classes {classes} differ from test classes {sorted(files['test'])}")
    if labels is not None and classes != sorted(labels):
        raise DatasetError(f"{path}: classes {classes} are not the {name} classes {labels}")
    labels = labels or classes
    index = {label: i for i, label in enumerate(labels)}
    arrays: dict[str, np.ndarray] = {}
    shape: tuple[int, ...] | None = None
    for split in ("train", "test"):
        images, targets = [], []
        for cls in classes:
            for rel, data in sorted(files[split][cls]):
                image = _decode_image(data, f"{path}:{rel}")
                if shape is None:
                    shape = image.shape
                elif image.shape != shape:
                    raise DatasetError(f"{path}:{rel}: image is {image.shape}, the first image was {shape}")
                images.append(image)
                targets.append(index[cls])
        arrays[f"x_{split}"] = np.stack(images)
        arrays[f"y_{split}"] = np.asarray(targets, dtype=np.int64)
    digest = file_sha256(path) if path.is_file() else arrays_sha256(*(arrays[k] for k in NPZ_KEYS))
    return Dataset(name, **arrays, labels=labels, source=str(path), sha256=digest)


def _walk(path: Path) -> Iterator[tuple[str, Callable[[], bytes]]]:
    if path.is_dir():
        for file in sorted(path.rglob("*")):
            if file.is_file():
                yield str(file.relative_to(path)), file.read_bytes
        return
    try:
        with tarfile.open(path) as tar:
            for member in tar:
                if member.isfile():
                    data = tar.extractfile(member)
                    if data is not None:
                        content = data.read()
                        yield member.name, lambda content=content: content
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DatasetError(
            f"{path}: not a readable tar archive ({exc}); expected train/<class>/* and test/<class>/*"
        ) from exc


def _decode_image(data: bytes, where: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as image:
            mode = "L" if image.mode in ("L", "1", "I;16", "I") else "RGB"
            array = np.asarray(image.convert(mode), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DatasetError(f"{where}: cannot decode image ({exc})") from exc
    return array[..., None] if array.ndim == 2 else array


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def arrays_sha256(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for a in arrays:
        digest.update(np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()
