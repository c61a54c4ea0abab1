"""Where a job reads and writes: a local path, or any fsspec URI (``s3://bucket/prefix``, ``gs://``, ``az://``).

Local paths go through pathlib exactly as before (temp file, fsync, rename); a URI goes through fsspec as the
model repository and the payload log do (service/storage.py): no listing or instance cache, the backend's
standard credential chain, and user:password never shown. An object is written in one PUT (or one completed
multipart upload), which is atomic on S3, GCS and Azure: a reader sees the old object or the new one. A Location
pickles as its URI, so Ray workers open their own filesystem with their own credentials.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path, PurePosixPath
from typing import IO, Any, TypeVar

from .. import storage
from ..errors import ServiceError
from ..storage import is_uri


class StoreUnavailable(ServiceError):
    """The store could not be listed, read or written just now: the job stops (exit 1) and a rerun resumes. Never
    an error row: an outage must not be recorded as finished work."""


@contextmanager
def _store(display: str) -> Iterator[None]:
    """Each backend raises its own errors (connection, throttling, permission); FileNotFoundError stays itself."""
    try:
        yield
    except (FileNotFoundError, StoreUnavailable):
        raise
    except Exception as exc:
        raise StoreUnavailable(f"{display}: {type(exc).__name__}: {exc}") from None


T = TypeVar("T")
# A batch job outlives a blip: each whole-object call is tried this many times, backing off (1 s, 2 s, 4 s), on
# top of the backend's own short retries; a longer outage stops the job and a rerun resumes it. The variable
# (read at each call, so Ray workers inherit it) trades patience for a quicker stop.
ATTEMPTS_VARIABLE = "PIXELSERVE_SCORE_STORE_ATTEMPTS"
ATTEMPTS = 4
BACKOFF_S = 1.0


def _patiently(display: str, call: Callable[[], T]) -> T:
    """`call` retried on store failures; every call retried here is idempotent (GET, LIST, PUT of a whole object)."""
    attempts = max(1, int(os.environ.get(ATTEMPTS_VARIABLE) or ATTEMPTS))
    for attempt in range(attempts):
        try:
            with _store(display):
                return call()
        except StoreUnavailable:
            if attempt == attempts - 1:
                raise
            time.sleep(BACKOFF_S * 2**attempt)
    raise AssertionError("unreachable")


def temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


class Location:
    """A file or folder; `local` is its Path on this machine, or None for an object in a store."""

    def __init__(self, target: str | Path, *, _fs: Any = None) -> None:
        self.uri = str(target)
        self.local: Path | None = None
        self.fs: Any = _fs
        self.path = ""
        if not is_uri(target):
            self.local = Path(str(target).removeprefix("file://")) if isinstance(target, str) else target
            return
        self.display = storage.redact(self.uri)
        if _fs is not None:  # a name below a location already open: the same filesystem
            self.path = _fs._strip_protocol(self.uri).rstrip("/")
        else:
            self.fs, self.path = storage.open_filesystem(self.uri, "scoring")

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (Location, (self.uri,))

    def __str__(self) -> str:
        return str(self.local) if self.local is not None else self.display

    def __repr__(self) -> str:
        return f"Location({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Location) and self.uri == other.uri

    def __hash__(self) -> int:
        return hash(self.uri)

    # -- names -------------------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.local.name if self.local is not None else PurePosixPath(self.path).name

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix

    def _sibling_uri(self, name: str) -> str:
        cut = self.uri.rstrip("/").rsplit("/", 1)[0]
        return f"{cut}/{name}"

    def with_name(self, name: str) -> Location:
        if self.local is not None:
            return Location(self.local.with_name(name))
        return Location(self._sibling_uri(name), _fs=self.fs)

    def with_suffix(self, suffix: str) -> Location:
        return self.with_name(str(PurePosixPath(self.name).with_suffix(suffix)))

    def __truediv__(self, name: str) -> Location:
        if self.local is not None:
            return Location(self.local / name)
        return Location(f"{self.uri.rstrip('/')}/{name}", _fs=self.fs)

    @property
    def parent(self) -> Location:
        if self.local is not None:
            return Location(self.local.parent)
        return Location(self.uri.rstrip("/").rsplit("/", 1)[0], _fs=self.fs)

    def identity(self) -> str:
        """How the manifest names it: the resolved local path, or the URI without credentials."""
        return str(self.local.resolve()) if self.local is not None else self.display

    # -- reading -----------------------------------------------------------------------------------------

    def is_dir(self) -> bool:
        if self.local is not None:
            return self.local.is_dir()
        return _patiently(self.display, lambda: bool(self.fs.isdir(self.path)))

    def exists(self) -> bool:
        if self.local is not None:
            return self.local.exists()
        return _patiently(self.display, lambda: bool(self.fs.exists(self.path)))

    def info(self) -> dict[str, Any]:
        """Size and a change token (mtime locally, ETag in a store); FileNotFoundError when it is not there."""
        if self.local is not None:
            st = self.local.stat()
            return {"size": st.st_size, "token": str(st.st_mtime_ns)}
        found = _patiently(self.display, lambda: self.fs.info(self.path))
        if found.get("type") == "directory":
            raise FileNotFoundError(self.display)
        return {"size": found.get("size"), "token": str(_token(found))}

    def read_bytes(self) -> bytes:
        if self.local is not None:
            return self.local.read_bytes()
        return _patiently(self.display, lambda: bytes(self.fs.cat_file(self.path)))

    @contextmanager
    def open(self) -> Iterator[IO[bytes]]:
        """A seekable binary reader (ranged reads in a store)."""
        if self.local is not None:
            with self.local.open("rb") as f:
                yield f
        else:
            with _store(self.display):
                opened = self.fs.open(self.path, "rb")
            with opened as f:
                yield f

    def files(self) -> dict[str, dict[str, Any]]:
        """Every object below this prefix, by key relative to it, with size and change token (stores only:
        local folders keep their own walk)."""
        prefix = self.path + "/"
        try:
            listing = _patiently(self.display, lambda: self.fs.find(self.path, detail=True))
        except FileNotFoundError:
            return {}
        return {
            path[len(prefix) :]: {"size": info.get("size"), "token": str(_token(info))}
            for path, info in listing.items()
            if path.startswith(prefix) and info.get("type", "file") == "file"
        }

    # -- writing -----------------------------------------------------------------------------------------

    def write_bytes(self, data: bytes) -> None:
        """Atomically: a local temp file fsynced and renamed, or one object PUT."""
        if self.local is not None:
            temp = temp_path(self.local)
            with temp.open("wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, self.local)
            return
        _patiently(self.display, lambda: self.fs.pipe_file(self.path, data))

    @contextmanager
    def staged(self) -> Iterator[Path]:
        """A local file to write; on success it becomes this location in one rename or one upload."""
        if self.local is not None:
            self.local.parent.mkdir(parents=True, exist_ok=True)
            temp = temp_path(self.local)
            try:
                yield temp
                os.replace(temp, self.local)
            finally:
                temp.unlink(missing_ok=True)
            return
        folder = Path(tempfile.mkdtemp(prefix="pixelserve-score-"))
        try:
            yield folder / self.name
            _patiently(self.display, lambda: self.fs.put_file(str(folder / self.name), self.path))
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def make_dir(self) -> None:
        if self.local is not None:
            self.local.mkdir(parents=True, exist_ok=True)
        # a store has no folders: a prefix exists once an object is under it

    def remove_tree(self) -> None:
        if self.local is not None:
            shutil.rmtree(self.local, ignore_errors=True)
            return
        with suppress(FileNotFoundError), _store(self.display):
            self.fs.rm(self.path, recursive=True)


def _token(info: dict[str, Any]) -> object:
    return info.get("ETag") or info.get("etag") or info.get("md5Hash") or info.get("LastModified") or info.get("mtime")


def read_objects(fs: Any, uris: Sequence[str]) -> list[bytes | FileNotFoundError]:
    """Several objects of one store at once (concurrent GETs); a missing one is returned as FileNotFoundError in
    its place (deleted since the listing: that input's error row), any other failure stops the job."""
    if not uris:
        return []
    display = storage.redact(uris[0].rsplit("/", 1)[0])
    found: dict[str, Any] = {}
    pending = [fs._strip_protocol(u) for u in uris]

    def fetch() -> None:
        got = fs.cat(pending, on_error="return")
        found.update(got if isinstance(got, dict) else {pending[0]: got})  # one path: fsspec returns bare bytes
        failed = [p for p in pending if isinstance(found.get(p), Exception) and not _missing(found[p])]
        if failed:
            pending[:] = failed  # the next attempt fetches only these
            raise StoreUnavailable(f"{display}: {len(failed)} objects failed: {found[failed[0]]!r}")

    _patiently(display, fetch)
    paths = [fs._strip_protocol(u) for u in uris]
    return [found[p] if p in found else FileNotFoundError(p) for p in paths]


def _missing(error: Exception) -> bool:
    return isinstance(error, FileNotFoundError)
