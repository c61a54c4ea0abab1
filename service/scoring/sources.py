"""Where a job's inputs come from: an image folder tree, a tar archive, an .npz array, or a Parquet/CSV table.

Every source lists its inputs once, in a deterministic order (sorted paths, array or row order), so shard k of
a rerun holds exactly the inputs shard k held before. `read` fetches the payloads of some listed entries: encoded
file bytes, or one image array for .npz (those skip encoding entirely). A payload that cannot even be read is an
error in its place, so one unreadable file costs one row, not the job.

Each source may also live in an object store (any fsspec URI, see location.py): a prefix of image objects, or a
tar, .npz or table object; a table's `path` column may hold URIs. Objects are fetched with concurrent GETs.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import tarfile
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import InvalidInput
from .location import Location, is_uri, read_objects

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


def _file_stamp(location: Location) -> str:
    info = location.info()
    return f"{location.identity()}|{info['size']}|{info['token']}"


def _read_file(path: str) -> bytes | InvalidInput:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        return InvalidInput(f"cannot read {path}: {exc.strerror or exc}")


def _read_refs(source: Source, refs: Sequence[str], shown: Sequence[str | None]) -> list[Payload]:
    """Local files one by one, objects in a store all at once; an empty ref or a failure is an error payload."""
    found: list[Payload] = [InvalidInput("empty path")] * len(refs)
    remote = [i for i, ref in enumerate(refs) if ref and is_uri(ref)]
    for i, ref in enumerate(refs):
        if ref and i not in remote:
            found[i] = _read_file(ref)
    if remote:  # StoreUnavailable (an outage) stops the job instead of becoming error rows
        objects = read_objects(source.store_fs(refs[remote[0]]), [refs[i] for i in remote])
        for i, data in zip(remote, objects, strict=True):
            found[i] = data if isinstance(data, bytes) else InvalidInput(f"cannot read {shown[i]}: no such object")
    return found


class Source(ABC):
    kind: str
    id_type: IdType

    def __init__(self, location: Location) -> None:
        self.location = location
        self.path = location.local if location.local is not None else location
        self.entries: list[Entry] = []

    @abstractmethod
    def fingerprint(self) -> str:
        """Changes when the inputs change, so a rerun over different inputs is refused."""

    @abstractmethod
    def read(self, entries: Sequence[Entry]) -> list[Payload]: ...

    def store_fs(self, uri: str) -> Any:
        """The filesystem for objects like `uri`, opened once per process (its connections are reused)."""
        if self.location.local is None and uri.startswith(self.location.uri.split("://", 1)[0] + "://"):
            return self.location.fs
        opened = self.__dict__.setdefault("_loaded_fs", {})
        protocol = uri.split("://", 1)[0]
        if protocol not in opened:
            opened[protocol] = Location(uri).fs
        return opened[protocol]

    def __getstate__(self) -> dict[str, Any]:
        """Ray ships sources to actors: send the listing, not arrays loaded on this side."""
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_loaded")}


class ImageFolder(Source):
    """Every file with an image suffix under a directory or prefix, recursively (hidden ones skipped);
    id = relative path."""

    kind = "folder"
    id_type: IdType = "str"

    def __init__(self, location: Location) -> None:
        super().__init__(location)
        path = location.local
        if path is None:
            self._objects = {
                rel: info
                for rel, info in sorted(location.files().items())
                if _is_image_name(rel) and not any(part.startswith(".") for part in rel.split("/"))
            }
            shown, uri = str(location).rstrip("/"), location.uri.rstrip("/")
            self.entries = [Entry(rel, f"{shown}/{rel}", f"{uri}/{rel}") for rel in self._objects]
            return
        files = sorted(
            p.relative_to(path).as_posix()
            for p in path.rglob("*")
            if p.is_file() and _is_image_name(p.name) and not any(part.startswith(".") for part in p.parts)
        )
        self.entries = [Entry(rel, str(path / rel), str(path / rel)) for rel in files]

    def fingerprint(self) -> str:
        if self.location.local is None:
            return _digest([f"{rel}|{i['size']}|{i['token']}" for rel, i in self._objects.items()])
        lines = []
        for e in self.entries:
            st = Path(str(e.ref)).stat()
            lines.append(f"{e.id}|{st.st_size}|{st.st_mtime_ns}")
        return _digest(lines)

    def read(self, entries: Sequence[Entry]) -> list[Payload]:
        if self.location.local is None:
            return _read_refs(self, [str(e.ref) for e in entries], [e.path for e in entries])
        return [_read_file(str(e.ref)) for e in entries]


class TarArchive(Source):
    """Image members of a .tar / .tar.gz, sorted by name. Reads seek to each member's data (forward only, in
    offset order), so a compressed archive is decompressed at most once per read, never held in memory."""

    kind = "tar"
    id_type: IdType = "str"

    def __init__(self, location: Location) -> None:
        super().__init__(location)
        try:
            with location.open() as raw, tarfile.open(fileobj=raw, mode="r:*") as archive:
                members = [m for m in archive if m.isfile() and _is_image_name(m.name)]
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise SourceError(f"cannot read tar archive {location}: {exc}") from exc
        members.sort(key=lambda m: m.name)
        self.entries = [Entry(m.name, m.name, m.offset_data, m.size) for m in members]

    def fingerprint(self) -> str:
        return _digest([_file_stamp(self.location), *(f"{e.id}|{e.size}" for e in self.entries)])

    def read(self, entries: Sequence[Entry]) -> list[Payload]:
        found: dict[int, Payload] = {}
        compressed = self.location.name.endswith((".gz", ".tgz"))
        # from a store, only a damaged archive costs rows; any other OSError is the store failing: stop the job
        damaged = (OSError, EOFError) if self.location.local is not None else (gzip.BadGzipFile, EOFError)
        with self.location.open() as stored, gzip.open(stored, "rb") if compressed else stored as raw:
            for e in sorted(entries, key=lambda e: int(e.ref)):
                try:
                    raw.seek(int(e.ref))
                    data = raw.read(e.size)
                except damaged as exc:
                    found[int(e.ref)] = InvalidInput(f"cannot read {e.path} from {self.location.name}: {exc}")
                    continue
                found[int(e.ref)] = data
        return [found[int(e.ref)] for e in entries]


class NpzArrays(Source):
    """One array of an .npz (Keras layout: x_test by default), N images of HW or HWC; id = index."""

    kind = "npz"
    id_type: IdType = "int"

    def __init__(self, location: Location, key: str) -> None:
        super().__init__(location)
        self.key = key
        array = self.array
        self.entries = [Entry(i, None, i) for i in range(len(array))]
        self.shape_text = f"{array.dtype}{list(array.shape)}"

    @property
    def array(self) -> np.ndarray:
        loaded = self.__dict__.get("_loaded_array")
        if loaded is None:
            try:
                with self.location.open() as raw, np.load(raw) as archive:
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
        return _digest([_file_stamp(self.location), self.key, self.shape_text])

    def read(self, entries: Sequence[Entry]) -> list[Payload]:
        array = self.array
        return [array[int(e.ref)] for e in entries]


class ImageTable(Source):
    """A Parquet or CSV table with a `path` column (files, relative to the table's folder) or an `image` column
    of encoded bytes (Parquet only); id = row number."""

    kind = "table"
    id_type: IdType = "int"

    def __init__(self, location: Location) -> None:
        super().__init__(location)
        columns = self._columns()
        if "path" in columns:
            self.column = "path"
            paths = self._load("path")
            base = location.parent
            self.entries = [Entry(i, p, _beside(base, p) if p else "") for i, p in enumerate(paths)]
        elif "image" in columns and location.suffix == ".parquet":
            self.column = "image"
            self.entries = [Entry(i, None, i) for i in range(self._row_count())]
        else:
            raise SourceError(
                f"{location} needs a 'path' column (or, in Parquet, an 'image' column of bytes); has {columns}"
            )

    def _columns(self) -> list[str]:
        with self.location.open() as raw:
            if self.location.suffix == ".csv":
                return next(csv.reader(io.TextIOWrapper(raw, newline="")), [])
            return list(_parquet().read_schema(raw).names)

    def _row_count(self) -> int:
        with self.location.open() as raw:
            return int(_parquet().read_metadata(raw).num_rows)

    def _load(self, column: str) -> list[Any]:
        with self.location.open() as raw:
            if self.location.suffix == ".csv":
                return [row[column] or None for row in csv.DictReader(io.TextIOWrapper(raw, newline=""))]
            return _parquet().read_table(raw, columns=[column]).column(column).to_pylist()

    def fingerprint(self) -> str:
        return _digest([_file_stamp(self.location), self.column, str(len(self.entries))])

    def read(self, entries: Sequence[Entry]) -> list[Payload]:
        if self.column == "path":
            return _read_refs(self, [str(e.ref) for e in entries], [e.path for e in entries])
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


def _beside(base: Location, path: str) -> str:
    """A table's path cell: a URI as it is, else relative to the table's folder (or prefix)."""
    if is_uri(path):
        return path
    if base.local is not None:
        return str(base.local / path)
    return f"{base.uri.rstrip('/')}/{path}"


def open_source(path: Path | Location, *, npz_key: str = "x_test") -> Source:
    """The source for a path or URI, by what it is: folder (or prefix), tar archive, .npz, .parquet or .csv."""
    location = path if isinstance(path, Location) else Location(path)
    try:
        return _open(location, npz_key)
    except SourceError:
        raise
    except (OSError, ValueError) as exc:  # a store that cannot be listed or read: the job cannot start
        raise SourceError(f"cannot read input {location}: {type(exc).__name__}: {exc}") from None


def _open(location: Location, npz_key: str) -> Source:
    if location.is_dir():
        return ImageFolder(location)
    name = location.name.lower()
    try:
        location.info()
    except FileNotFoundError:
        raise SourceError(f"input {location} does not exist") from None
    if name.endswith(TAR_SUFFIXES):
        return TarArchive(location)
    if name.endswith(".npz"):
        return NpzArrays(location, npz_key)
    if name.endswith(TABLE_SUFFIXES):
        return ImageTable(location)
    raise SourceError(f"cannot score {location}: give a folder, .tar/.tar.gz, .npz, .parquet or .csv")
