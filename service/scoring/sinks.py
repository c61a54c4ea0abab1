"""Rows on disk or in a store: the assembled output (Parquet, JSONL or CSV) plus the errors file, each written
to a local file first, then renamed (or uploaded in one PUT) into place, so it appears whole or not at all.
Every output has the same columns for a task, whatever rows failed, so files of one job always line up."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..core.types import TaskName
from .job import OutputFormat
from .location import Location
from .scorer import Row
from .sources import IdType

COMMON_COLUMNS = ("id", "path", "model", "version", "status", "error")
TASK_COLUMNS: dict[str, tuple[str, ...]] = {
    "classify": (
        "label",
        "probability",
        "top_labels",
        "top_indices",
        "top_probabilities",
        "ood_score",
        "is_ood",
        "anomaly_score",
    ),
    "reconstruct": ("reconstruction_error", "anomaly_threshold", "is_anomaly", "anomaly_score"),
    "denoise": ("reconstruction_error", "output_path"),
    "encode": ("latent",),
}
FORMATS: dict[str, OutputFormat] = {".parquet": "parquet", ".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv"}
PARQUET_ROWS_PER_GROUP = 65536


def columns(task: TaskName) -> tuple[str, ...]:
    return COMMON_COLUMNS + TASK_COLUMNS[task]


def format_for(path: Path | Location, explicit: str | None) -> OutputFormat:
    if explicit:
        return FORMATS[f".{explicit}"]
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the output format from {path.name!r}; use .parquet, .jsonl or .csv or --format")
    return fmt


def _arrow_schema(task: TaskName, id_type: IdType) -> Any:
    import pyarrow as pa

    types = {
        "id": pa.int64() if id_type == "int" else pa.string(),
        "path": pa.string(),
        "model": pa.string(),
        "version": pa.int64(),
        "status": pa.string(),
        "error": pa.string(),
        "label": pa.string(),
        "probability": pa.float64(),
        "top_labels": pa.list_(pa.string()),
        "top_indices": pa.list_(pa.int64()),
        "top_probabilities": pa.list_(pa.float64()),
        "ood_score": pa.float64(),
        "is_ood": pa.bool_(),
        "reconstruction_error": pa.float64(),
        "anomaly_threshold": pa.float64(),
        "is_anomaly": pa.bool_(),
        "anomaly_score": pa.float64(),
        "output_path": pa.string(),
        "latent": pa.list_(pa.float64()),
    }
    return pa.schema([(name, types[name]) for name in columns(task)])


def _chunks(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    chunk: list[Row] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _csv_cell(value: Any) -> Any:
    if isinstance(value, list):
        return json.dumps(value)
    return "" if value is None else value


def write_output(location: Location, fmt: OutputFormat, task: TaskName, id_type: IdType, rows: Iterable[Row]) -> int:
    """The final output, atomically; missing task columns (error rows) are null. Returns the row count."""
    with location.staged() as temp:
        return _write_output(temp, fmt, task, id_type, rows)


def _write_output(temp: Path, fmt: OutputFormat, task: TaskName, id_type: IdType, rows: Iterable[Row]) -> int:
    names = columns(task)
    complete = ({name: row.get(name) for name in names} for row in rows)
    if fmt == "jsonl":
        return _write_lines(temp, complete)
    count = 0
    if fmt == "csv":
        with temp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=names)
            writer.writeheader()
            for row in complete:
                writer.writerow({k: _csv_cell(v) for k, v in row.items()})
                count += 1
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = _arrow_schema(task, id_type)
        with pq.ParquetWriter(temp, schema) as writer:
            for chunk in _chunks(complete, PARQUET_ROWS_PER_GROUP):
                writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
                count += len(chunk)
    return count


def write_errors(location: Location, rows: Iterable[Row]) -> int:
    """Only the failed inputs, with their reason: the list to fix or to look at."""
    with location.staged() as temp:
        return _write_lines(temp, ({"id": r["id"], "path": r["path"], "error": r["error"]} for r in rows))


def _write_lines(path: Path, rows: Iterable[Row]) -> int:
    """JSON lines, fsynced: the caller renames or uploads the finished file."""
    count = 0
    with path.open("w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
        f.flush()
        os.fsync(f.fileno())
    return count
