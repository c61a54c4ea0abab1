"""The work directory beside the output: one file per finished shard and a manifest naming the job.

Exactly once: a shard's rows are written to a temporary file and renamed into place, then the manifest records
the shard. A killed run leaves at worst a temporary file or a shard the manifest does not list yet; both are
simply done again. The manifest's job identity (model and version, task, input fingerprint, options) must
match a rerun's, so rows of two different jobs never end up in one output.

With an output in an object store the work directory is the `<output>.work/` prefix beside it: a shard is one
object written in one PUT (atomic), and the manifest is rewritten in one PUT after it. Whoever scored a shard
may write it (a Ray worker does, see `write_shard`); only the driver records shards in the manifest, so the
manifest has a single writer and a shard it does not list is redone however far its object got.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .location import Location
from .scorer import Row

P = TypeVar("P", Path, Location)

MANIFEST = "manifest.json"


class JobMismatch(Exception):
    """The output belongs to another job; the message says what differs and what to do."""


def shard_ranges(count: int, size: int) -> list[range]:
    """Shard k holds listing positions [k*size, (k+1)*size): fixed by the sorted listing alone."""
    return [range(start, min(start + size, count)) for start in range(0, count, size)]


def work_dir_for(output: P) -> P:
    return output.with_name(f"{output.name}.work")


def shard_name(index: int) -> str:
    return f"shard-{index:06d}.jsonl"


def writer() -> str:
    """Who wrote a shard (process id @ host), recorded in the manifest: the driver, or a Ray worker."""
    return f"{os.getpid()}@{socket.gethostname()}"


def write_shard(root: Location, index: int, rows: Sequence[Row]) -> dict[str, Any]:
    """Write one shard in one atomic step; returns what the manifest records about it."""
    data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()
    (root / shard_name(index)).write_bytes(data)
    return {"rows": len(rows), "errors": sum(row["status"] != "ok" for row in rows), "writer": writer()}


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
    def __init__(self, root: Location) -> None:
        self.root = root
        self.manifest: dict[str, Any] = {}
        self._lock = threading.Lock()

    def shard_path(self, index: int) -> Location:
        return self.root / shard_name(index)

    def open(self, job: dict[str, Any], shards: Sequence[range], *, output: Location, overwrite: bool) -> set[int]:
        """Start or resume; returns the shards already finished. Raises JobMismatch for another job's output."""
        job = json.loads(json.dumps(job))
        path = self.root / MANIFEST
        if overwrite:
            self.root.remove_tree()
        elif path.exists():
            recorded = json.loads(path.read_bytes())
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
            self.root.make_dir()
            self._save()
        done = self.manifest["shards"]
        listed = set(self.root.files()) if self.root.local is None else None  # one listing, not a HEAD per shard
        return {
            i
            for i, r in enumerate(shards)
            if done.get(str(i), {}).get("rows") == len(r)
            and (shard_name(i) in listed if listed is not None else self.shard_path(i).exists())
        }

    def commit(self, index: int, rows: Sequence[Row]) -> None:
        """Write the shard atomically, then record it; safe to call from several threads."""
        self.record(index, write_shard(self.root, index, rows))

    def record(self, index: int, written: dict[str, Any]) -> None:
        """Record a shard already written (by this process or a worker): from now on a rerun keeps it."""
        with self._lock:
            self.manifest["shards"][str(index)] = written
            self._save()

    def _save(self) -> None:
        (self.root / MANIFEST).write_bytes((json.dumps(self.manifest, indent=1, sort_keys=True) + "\n").encode())

    def rows(self) -> Iterator[Row]:
        """Every shard's rows in shard order: the listing order, each input once."""
        for i in range(self.manifest["shard_count"]):
            for line in self.shard_path(i).read_bytes().decode().splitlines():
                yield json.loads(line)
