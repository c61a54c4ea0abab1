"""Shards into an object store (``s3://bucket/prefix``, ``gs://``, ``az://``), through fsspec as the model
repository reads them (service/storage.py).

Object stores have neither append nor rename, so the log writes each shard to a local staging folder exactly as
it writes a local one, and an `Uploader` thread puts the committed file whole (a single PUT, which a reader
sees completely or not at all), then deletes the local copy. The writer thread never waits on the network.

While the store cannot be reached, shards stay staged: the uploader retries at the next commit, flush or close
and on a timer that backs off, and says so once per outage. The backlog is bounded: when it is full the oldest
shard is deleted and its rows counted as `failed`. What is still staged when the log closes stays on disk, and
the next log on the same URI (a restart) adopts and uploads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ...storage import open_filesystem, redact

log = logging.getLogger(__name__)

Count = Callable[[Literal["written", "failed"], str, int], None]  # (event, model, rows)
SUFFIXES = (".parquet", ".jsonl")


class ShardStore:
    """The store side: where a staged shard goes (`<prefix>/<model>/<task>/<name>`), one PUT per shard."""

    def __init__(self, uri: str) -> None:
        """ValueError (from `open_filesystem`) when the URI cannot be written here."""
        self.uri, self.display = uri, redact(uri)
        self.fs, self.root = open_filesystem(uri, "payload log")
        if hasattr(self.fs, "retries"):  # s3fs tries 5 times, backing off (~10 s); the uploader is the retry loop
            self.fs.retries = 1
        _quiet_write_resets()

    def put(self, local: Path, relative: str) -> None:
        self.fs.put_file(str(local), f"{self.root}/{relative}")

    def staging_root(self) -> Path:
        """One local folder per URI, shared by a server's workers and its next start (which adopts leftovers)."""
        digest = hashlib.sha256(self.uri.encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / "pixelserve-payload-staging" / digest


def _quiet_write_resets() -> None:
    """aiohttp reports a body it could not send on a dropped connection twice: as the request's error, which the
    uploader handles and logs once per outage, and as an unretrieved task on fsspec's loop, logged at every try.
    Only that second report is silenced; anything else goes to the loop's default handler."""
    try:
        from aiohttp import ClientConnectionResetError
        from fsspec.asyn import get_loop
    except ImportError:
        return
    loop = get_loop()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if not isinstance(context.get("exception"), ClientConnectionResetError):
            loop.default_exception_handler(context)

    if loop.get_exception_handler() is None:
        loop.call_soon_threadsafe(loop.set_exception_handler, handler)


@dataclass
class Staged:
    """A committed shard waiting in the staging folder: `relative` is its key under the store's prefix."""

    path: Path
    relative: str
    model: str
    rows: int


def prune(folder: Path) -> None:
    """Remove the empty folders under `folder`, and it too when it ends up empty (staging leaves no litter)."""
    for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            sub.rmdir()
    with contextlib.suppress(OSError):
        folder.rmdir()


def shard_rows(path: Path) -> int:
    """Rows of a committed shard (for one adopted from an earlier run, whose count was not kept)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


class Uploader:
    """A thread that puts staged shards into the store, oldest first, and deletes each once it is there."""

    def __init__(
        self,
        store: ShardStore,
        count: Count,
        staging: Path,
        own: Path,
        *,
        backlog: int = 100,
        retry_s: float = 2.0,
        max_retry_s: float = 60.0,
    ) -> None:
        self.store = store
        self._count = count
        self._staging, self._own = staging, own  # the URI's staging folder, and this log's folder in it
        self._backlog = backlog
        self._retry_s, self._max_retry_s = retry_s, max_retry_s
        self._items: deque[Staged] = deque()
        self._cond = threading.Condition()
        self._requested = self._attempted = 0  # passes asked for / finished (flush waits on these)
        self._stop = False
        self._down_since: float | None = None
        self._given_up = 0  # shards given up since the store was last reachable
        self._delay = retry_s
        self._next_try = 0.0
        self._thread = threading.Thread(target=self._run, name="pixelserve-payload-upload", daemon=True)
        self._thread.start()

    @property
    def staged(self) -> int:
        """Shards waiting in the staging folder."""
        with self._cond:
            return len(self._items)

    def add(self, item: Staged) -> None:
        """Queue a committed shard and try at once; a full backlog gives up its oldest shard (counted failed)."""
        given_up: list[Staged] = []
        with self._cond:
            self._items.append(item)
            while len(self._items) > self._backlog:
                given_up.append(self._items.popleft())
            first = given_up and not self._given_up
            self._given_up += len(given_up)
            self._requested += 1
            self._cond.notify_all()
        for old in given_up:
            old.path.unlink(missing_ok=True)
            self._count("failed", old.model, old.rows)
        if first:  # once per outage; the recovery message has the total
            log.warning("payload log: the backlog of %d staged shards for %s is full; the oldest are given up and "
                        "their rows counted as failed", self._backlog, self.store.display)  # fmt: skip

    def adopt(self) -> None:
        """Claim committed shards an earlier run left staged (a rename, so two workers never both take one)."""
        staging, own = self._staging, self._own
        for path in sorted(staging.glob("*/*/*/*")):
            if path.is_relative_to(own) or path.name.startswith(".") or path.suffix not in SUFFIXES:
                continue
            relative = path.relative_to(staging).parts[1:]
            target = own.joinpath(*relative)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.rename(path, target)
                rows = shard_rows(target)
            except Exception:  # another worker took it first, or a shard that cannot be read: left where it is
                continue
            self.add(Staged(target, "/".join(relative), relative[0], rows))
            log.info("payload log: adopted %s, staged by an earlier run, for %s", "/".join(relative),
                     self.store.display)  # fmt: skip
        for folder in staging.iterdir() if staging.is_dir() else ():
            if folder != own:
                prune(folder)

    def drain(self, timeout: float | None) -> bool:
        """One upload attempt at everything staged so far; True when nothing is left staged."""
        with self._cond:
            self._requested += 1
            target = self._requested
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._attempted >= target or not self._thread.is_alive(), timeout)
            return not self._items

    def close(self, timeout: float | None) -> None:
        """A last attempt at what is staged, then the thread stops; what fails stays staged for the next start."""
        with self._cond:
            self._stop = True
            self._requested += 1
            self._cond.notify_all()
        self._thread.join(timeout)
        with self._cond:
            left = list(self._items)
        if not left:
            prune(self._own)
        else:
            log.warning("payload log: %d shard(s) (%d rows) could not be put into %s and stay staged in %s; the "
                        "next start on this URI uploads them", len(left), sum(i.rows for i in left),
                        self.store.display, left[0].path.parents[2])  # fmt: skip

    # -- the thread --------------------------------------------------------------------------------------

    def _due(self) -> bool:
        if self._stop or self._requested > self._attempted:
            return True
        return bool(self._items) and time.monotonic() >= self._next_try

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._due():
                    wait = self._next_try - time.monotonic() if self._items else None
                    self._cond.wait(wait)
                stop, target = self._stop, self._requested
            self._pass()
            with self._cond:
                self._attempted = max(self._attempted, target)
                self._cond.notify_all()
            if stop:
                return

    def _pass(self) -> None:
        """Upload in order until one fails (the store is down: the rest would fail the same way)."""
        while True:
            with self._cond:
                if not self._items:
                    return
                item = self._items[0]
            try:
                self.store.put(item.path, item.relative)
            except FileNotFoundError as exc:
                if item.path.exists():  # the store refused (no such bucket): an outage like any other
                    self._failed(exc)
                    return
                self._forget(item)  # another worker adopted it and uploads it
                continue
            except Exception as exc:  # each backend raises its own: connection, permission, throttling
                self._failed(exc)
                return
            self._forget(item)
            item.path.unlink(missing_ok=True)
            self._count("written", item.model, item.rows)
            self._recovered()

    def _forget(self, item: Staged) -> None:
        with self._cond:
            if self._items and self._items[0] is item:
                self._items.popleft()

    def _failed(self, exc: Exception) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("payload log: cannot put shards into %s (%s: %s); they stay staged and are retried",
                        self.store.display, type(exc).__name__, exc)  # fmt: skip
        else:
            self._delay = min(self._delay * 2, self._max_retry_s)
        self._next_try = time.monotonic() + self._delay

    def _recovered(self) -> None:
        if self._down_since is not None:
            with self._cond:
                given_up, self._given_up = self._given_up, 0
            log.info("payload log: %s is reachable again after %.0f s; uploading the staged shards (%d given up "
                     "meanwhile)", self.store.display, time.monotonic() - self._down_since, given_up)  # fmt: skip
            self._down_since = None
            self._delay = self._retry_s
