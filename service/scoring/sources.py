"""Where a job's inputs come from: an image folder tree, a tar archive, an .npz array, or a Parquet/CSV table.

Every source lists its inputs once, in a deterministic order (sorted paths, array or row order), so shard k of
a rerun holds exactly the inputs shard k held before. `read` fetches the payloads of some listed entries: encoded
file bytes, or one image array for .npz (those skip encoding entirely). A payload that cannot even be read is an
error in its place, so one unreadable file costs one row, not the job.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import tarfile
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import InvalidInput

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif"})
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
TABLE_SUFFIXES = (".parquet", ".csv")

Payload = bytes | np.ndarray | InvalidInput
IdType = Literal["int", "str"]


class SourceError(Exception):
    """The source as a whole cannot be used (missing file, unknown layout); the job does not start."""


@dataclass(frozen=True)
class Entry:
    """One input: `id` goes into the output, `ref` tells `read` where the payload is (file path, tar data
    offset, array or row index)."""

    id: int | str
    path: str | None
    ref: int | str
    size: int = 0


def _is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


def _digest(lines: Sequence[str]) -> str:
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode())
        h.update(b"\n")
    return h.hexdigest()


def _file_stamp(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def _read_file(path: str) -> bytes | InvalidInput:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        return InvalidInput(f"cannot read {path}: {exc.strerror or exc}")


class Source(ABC):
    kind: str
    id_type: IdType

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: list[Entry] = []

    @abstractmethod
    def fingerprint(self) -> str:
        """Changes when the inputs change, so a rerun over different inputs is refused."""

    @abstractmethod
    def read(self, entries: Sequence[Entry]) -> list[Payload]: ...

    def __getstate__(self) -> dict[str, Any]:
        """Ray ships sources to actors: send the listing, not arrays loaded on this side."""
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_loaded")}


class ImageFolder(Source):
    """Every file with an image suffix under a directory, recursively (hidden ones skipped); id = relative path."""

    kind = "folder"
    id_type: IdType = "str"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        files = sorted(
            p.relative_to(path).as_posix()
            for p in path.rglob("*")
            if p.is_file() and _is_image_name(p.name) and not any(part.startswith(".") for part in p.parts)
        )
        self.entries = [Entry(rel, str(path / rel), str(path / rel)) for rel in files]

    def fingerprint(self) -> str:
        lines = []
        for e in self.entries:
            st = Path(str(e.ref)).stat()
            lines.append(f"{e.id}|{st.st_size}|{st.st_mtime_ns}")
        return _digest(lines)

    def read(self, entries: Sequence[Entry]) -> list[Payload]:
        return [_read_file(str(e.ref)) for e in entries]


class TarArchive(Source):
    """Image members of a .tar / .tar.gz, sorted by name. Reads seek to each member's data (forward only, in
    offset order), so a compressed archive is decompressed at most once per read, never held in memory."""

    kind = "tar"
    id_type: IdType = "str"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        try:
            with tarfile.open(path, "r:*") as archive:
                members = [m for m in archive if m.isfile() and _is_image_name(m.name)]
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise SourceError(f"cannot read tar archive {path}: {exc}") from exc
        members.sort(key=lambda m: m.name)
        self.entries = [Entry(m.name, m.name, m.offset_data, m.size) for m in members]

    def fingerprint(self) -> str:
        return _digest([_file_stamp(self.path), *(f"{e.id}|{e.size}" for e in self.entries)])

    def read(self, entries: Sequence[Entry]) -> list[Payload]:
        found: dict[int, Payload] = {}
        opener = gzip.open if self.path.name.endswith((".gz", ".tgz")) else open
        with opener(self.path, "rb") as raw:
            for e in sorted(entries, key=lambda e: int(e.ref)):
                try:
                    raw.seek(int(e.ref))
                    data = raw.read(e.size)
                except (OSError, EOFError) as exc:
                    found[int(e.ref)] = InvalidInput(f"cannot read {e.path} from {self.path.name}: {exc}")
                    continue
                found[int(e.ref)] = data
        return [found[int(e.ref)] for e in entries]


class NpzArrays(Source):
    """One array of an .npz (Keras layout: x_test by default), N images of HW or HWC; id = index."""

    kind = "npz"
    id_type: IdType = "int"

    def __init__(self, path: Path, key: str) -> None:
        super().__init__(path)
        self.key = key
        array = self.array
        self.entries = [Entry(i, None, i) for i in range(len(array))]
        self.shape_text = f"{array.dtype}{list(array.shape)}"

    @property
    def array(self) -> np.ndarray:
        loaded = self.__dict__.get("_loaded_array")
        if loaded is None:
            try:
                with np.load(self.path) as archive:
                    if self.key not in archive.files:
                        raise SourceError(
                            f"{self.path} has no array {self.key!r} (it has {archive.files}); use --npz-key"
                        )
                    loaded = archive[self.key]
            except (OSError, ValueError) as exc:
                raise SourceError(f"cannot read {self.path} as .npz: {exc}") from exc
            if loaded.ndim < 1:
                raise SourceError(f"array {self.key!r} in {self.path} is a scalar, not a batch of images")
            self.__dict__["_loaded_array"] = loaded
        return loaded

    def fingerprint(self) -> str:
        return _digest([_file_stamp(self.path), self.key, self.shape_text])

    def read(self, entries: Sequence[Entry]) -> list[Payload]:
        array = self.array
        return [array[int(e.ref)] for e in entries]


class ImageTable(Source):
    """A Parquet or CSV table with a `path` column (files, relative to the table's folder) or an `image` column
    of encoded bytes (Parquet only); id = row number."""

    kind = "table"
    id_type: IdType = "int"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        columns = self._columns()
        if "path" in columns:
            self.column = "path"
            paths = self._load("path")
            base = path.parent
            self.entries = [Entry(i, p, str(base / p) if p else "") for i, p in enumerate(paths)]
        elif "image" in columns and path.suffix == ".parquet":
            self.column = "image"
            self.entries = [Entry(i, None, i) for i in range(self._row_count())]
        else:
            raise SourceError(
                f"{path} needs a 'path' column (or, in Parquet, an 'image' column of bytes); has {columns}"
            )

    def _columns(self) -> list[str]:
        if self.path.suffix == ".csv":
            with self.path.open(newline="") as f:
                return next(csv.reader(f), [])
        return list(_parquet().read_schema(self.path).names)

    def _row_count(self) -> int:
        return int(_parquet().read_metadata(self.path).num_rows)

    def _load(self, column: str) -> list[Any]:
        if self.path.suffix == ".csv":
            with self.path.open(newline="") as f:
                return [row[column] or None for row in csv.DictReader(f)]
        return _parquet().read_table(self.path, columns=[column]).column(column).to_pylist()

    def fingerprint(self) -> str:
        return _digest([_file_stamp(self.path), self.column, str(len(self.entries))])

    def read(self, entries: Sequence[Entry]) -> list[Payload]:
        if self.column == "path":
            return [_read_file(str(e.ref)) if e.ref else InvalidInput("empty path") for e in entries]
        images = self.__dict__.get("_loaded_images")
        if images is None:
            images = self.__dict__["_loaded_images"] = self._load("image")
        return [
            bytes(images[int(e.ref)]) if images[int(e.ref)] is not None else InvalidInput("empty image cell")
            for e in entries
        ]


def _parquet() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise SourceError("Parquet needs pyarrow: pip install 'pixelserve[batch]'") from exc
    return pq


def open_source(path: Path, *, npz_key: str = "x_test") -> Source:
    """The source for a path, by what it is: directory, tar archive, .npz, .parquet or .csv."""
    if path.is_dir():
        return ImageFolder(path)
    if not path.is_file():
        raise SourceError(f"input {path} does not exist")
    name = path.name.lower()
    if name.endswith(TAR_SUFFIXES):
        return TarArchive(path)
    if name.endswith(".npz"):
        return NpzArrays(path, npz_key)
    if name.endswith(TABLE_SUFFIXES):
        return ImageTable(path)
    raise SourceError(f"cannot score {path}: give a folder, .tar/.tar.gz, .npz, .parquet or .csv")
