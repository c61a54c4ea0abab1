"""Shard files of the payload log, written atomically: rows go to a hidden temp file beside the shard and the
shard appears whole at commit (fsync, rename), so a reader never sees part of one. Parquet shards hold rows
in memory only up to a row group; JSON lines go to disk as they come.

Also the reading side (`read_rows`, for `pixelserve dataset`) and `safe_name`, which turns a model name or a
row id into a file name that stays inside its folder.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from ...scoring.rows import Row
from .columns import BINARY_COLUMNS, arrow_schema
from .record import LoggedTask

ShardFormat = Literal["parquet", "jsonl"]
SUFFIXES: dict[str, ShardFormat] = {".parquet": "parquet", ".jsonl": "jsonl"}
ROW_GROUP_ROWS = 1024
ROW_GROUP_BYTES = 16 * 1024 * 1024  # images held before a row group is written, whatever the row count
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str, limit: int = 100) -> str:
    """Letters, digits, '.', '_' and '-' only, never hidden or '..'; a changed name gets a hash of the original,
    so two different names never meet in one file."""
    cleaned = _UNSAFE.sub("_", text).lstrip(".")[:limit] or "_"
    if cleaned == text:
        return cleaned
    return f"{cleaned}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


class ShardFile(Protocol):
    """One shard being written: rows appended, then committed (it appears) or aborted (nothing appears)."""

    path: Path
    rows: int

    def append(self, rows: Sequence[Row]) -> None: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


ShardOpener = Callable[[Path, ShardFormat, LoggedTask], ShardFile]


def _temp(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _fsync_replace(temp: Path, path: Path) -> None:
    with temp.open("rb+") as f:
        os.fsync(f.fileno())
    os.replace(temp, path)


class JsonlShard:
    def __init__(self, path: Path) -> None:
        self.path, self.rows = path, 0
        self._temp = _temp(path)
        self._file = self._temp.open("w", encoding="utf-8")

    def append(self, rows: Sequence[Row]) -> None:
        for row in rows:
            encoded = {k: base64.b64encode(v).decode() if isinstance(v, bytes) else v for k, v in row.items()}
            self._file.write(json.dumps(encoded, ensure_ascii=False) + "\n")
        self.rows += len(rows)

    def commit(self) -> None:
        self._file.close()
        _fsync_replace(self._temp, self.path)

    def abort(self) -> None:
        self._file.close()
        self._temp.unlink(missing_ok=True)


class ParquetShard:
    def __init__(self, path: Path, task: LoggedTask) -> None:
        import pyarrow.parquet as pq

        self.path, self.rows = path, 0
        self._schema = arrow_schema(task)
        self._temp = _temp(path)
        self._writer = pq.ParquetWriter(self._temp, self._schema)
        self._pending: list[Row] = []
        self._pending_bytes = 0

    def append(self, rows: Sequence[Row]) -> None:
        self._pending.extend(rows)
        self._pending_bytes += sum(len(row[k] or b"") for row in rows for k in BINARY_COLUMNS if k in row)
        self.rows += len(rows)
        if len(self._pending) >= ROW_GROUP_ROWS or self._pending_bytes >= ROW_GROUP_BYTES:
            self._write_group()

    def _write_group(self) -> None:
        import pyarrow as pa

        if self._pending:
            self._writer.write_table(pa.Table.from_pylist(self._pending, schema=self._schema))
        self._pending, self._pending_bytes = [], 0

    def commit(self) -> None:
        self._write_group()
        self._writer.close()
        _fsync_replace(self._temp, self.path)

    def abort(self) -> None:
        try:
            self._writer.close()
        finally:
            self._temp.unlink(missing_ok=True)


def open_shard(path: Path, fmt: ShardFormat, task: LoggedTask) -> ShardFile:
    """The real shard files; tests may pass another opener to `PayloadLog` (e.g. one that is slow)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return ParquetShard(path, task) if fmt == "parquet" else JsonlShard(path)


# -- reading -------------------------------------------------------------------------------------------------


def shard_files(root: Path) -> list[Path]:
    """Committed shards under a folder (recursively) or the one file given; temp files are hidden, so skipped."""
    if root.is_file():
        return [root]
    found = (p for p in root.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
    return sorted(p for p in found if not any(part.startswith(".") for part in p.relative_to(root).parts))


def read_rows(path: Path, columns: Sequence[str] | None = None) -> Iterator[Row]:
    """A shard's rows with images as bytes; `columns` limits what Parquet reads (missing ones are skipped)."""
    if SUFFIXES.get(path.suffix) == "parquet":
        import pyarrow.parquet as pq

        file = pq.ParquetFile(path)
        present = set(file.schema_arrow.names)
        wanted = None if columns is None else [c for c in columns if c in present]
        for batch in file.iter_batches(batch_size=256, columns=wanted):
            yield from batch.to_pylist()
        return
    with path.open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            row: dict[str, Any] = json.loads(line)
            for key in BINARY_COLUMNS:
                if isinstance(row.get(key), str):
                    row[key] = base64.b64decode(row[key])
            yield row
