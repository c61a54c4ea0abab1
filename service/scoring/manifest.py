"""The work directory beside the output: one file per finished shard and a manifest naming the job.

Exactly once: a shard's rows are written to a temporary file and renamed into place, then the manifest records
the shard. A killed run leaves at worst a temporary file or a shard the manifest does not list yet; both are
simply done again. The manifest's job identity (model and version, task, input fingerprint, options) must
match a rerun's, so rows of two different jobs never end up in one output.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .scorer import Row
from .sinks import read_jsonl, temp_path, write_jsonl

MANIFEST = "manifest.json"


class JobMismatch(Exception):
    """The output belongs to another job; the message says what differs and what to do."""


def shard_ranges(count: int, size: int) -> list[range]:
    """Shard k holds listing positions [k*size, (k+1)*size): fixed by the sorted listing alone."""
    return [range(start, min(start + size, count)) for start in range(0, count, size)]


def work_dir_for(output: Path) -> Path:
    return output.with_name(f"{output.name}.work")


def _differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    found = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            found.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return found


class WorkDir:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.manifest: dict[str, Any] = {}
        self._lock = threading.Lock()

    def shard_path(self, index: int) -> Path:
        return self.root / f"shard-{index:06d}.jsonl"

    def open(self, job: dict[str, Any], shards: Sequence[range], *, output: Path, overwrite: bool) -> set[int]:
        """Start or resume; returns the shards already finished. Raises JobMismatch for another job's output."""
        job = json.loads(json.dumps(job))
        path = self.root / MANIFEST
        if overwrite:
            shutil.rmtree(self.root, ignore_errors=True)
        elif path.exists():
            recorded = json.loads(path.read_text())
            if recorded.get("job") != job:
                changes = "; ".join(_differences(recorded.get("job", {}), job))
                raise JobMismatch(
                    f"{output} belongs to a different scoring job ({changes}). Write to another --output, "
                    "or pass --overwrite to discard the earlier results."
                )
            self.manifest = recorded
        elif output.exists():
            raise JobMismatch(
                f"{output} exists but has no work directory {self.root.name}; pass --overwrite to replace it"
            )
        if not self.manifest:
            self.manifest = {"job": job, "shard_count": len(shards), "shards": {}}
            self.root.mkdir(parents=True, exist_ok=True)
            self._save()
        done = self.manifest["shards"]
        return {
            i
            for i, r in enumerate(shards)
            if done.get(str(i), {}).get("rows") == len(r) and self.shard_path(i).exists()
        }

    def commit(self, index: int, rows: Sequence[Row]) -> None:
        """Rename the shard into place, then record it; safe to call from several threads."""
        write_jsonl(self.shard_path(index), rows)
        errors = sum(row["status"] != "ok" for row in rows)
        with self._lock:
            self.manifest["shards"][str(index)] = {"rows": len(rows), "errors": errors}
            self._save()

    def _save(self) -> None:
        path = self.root / MANIFEST
        temp = temp_path(path)
        temp.write_text(json.dumps(self.manifest, indent=1, sort_keys=True) + "\n")
        temp.replace(path)

    def rows(self) -> Iterator[Row]:
        """Every shard's rows in shard order: the listing order, each input once."""
        for i in range(self.manifest["shard_count"]):
            yield from read_jsonl(self.shard_path(i))
