"""`PayloadLog`: sampling on the request path, a bounded queue, and one writer thread that turns records into
rows and rotating shards `<dir>/<model>/<task>/part-<UTC time>-<log>-<n>.<parquet|jsonl>`. The directory may
be an object-store URI instead: shards are then staged locally and uploaded whole when committed (upload.py).

The request path only ever calls `sample` and `offer`: `offer` is a `put_nowait` on a bounded queue, so a
slow disk or a burst costs dropped records (counted), never a waiting request. Encoding tensors to PNG,
building rows and writing happen in the writer thread. Shards are one per model and task (the task decides
the columns) and rotate at `shard_rows` rows, after `shard_s` seconds, on `flush` and on `close`.

Counters, in rows (one per input image): `written` (in committed shards; in the store for a URI), `dropped`
(buffer full or the log closed), `failed` (rows that could not be built or written, or staged shards given
up). `on_count(event, model, rows)` is called with each change, e.g. to feed Prometheus counters; for drops it
runs on the request path, so keep it cheap.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from ...settings import Settings
from .columns import record_rows
from .record import LoggedTask, PayloadRecord, new_id
from .shards import ShardFile, ShardFormat, ShardOpener, open_shard, safe_name
from .upload import ShardStore, Staged, Uploader

log = logging.getLogger(__name__)

CountEvent = Literal["written", "dropped", "failed"]
OnCount = Callable[[CountEvent, str, int], None]
DRAIN_BATCH = 256  # records taken off the queue per wake-up


class PayloadLogError(ValueError):
    """The log cannot start as configured (missing pyarrow, an unwritable folder, a URI without its fsspec
    backend): refused at start-up."""


@dataclass(eq=False)
class _Flush:
    done: threading.Event = field(default_factory=threading.Event)


_STOP = object()


@dataclass
class _Open:
    shard: ShardFile
    opened: float


def _require_pyarrow() -> None:
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError as exc:
        raise PayloadLogError(
            f"payload_log_format=parquet needs pyarrow ({exc}): pip install 'pixelserve[batch]', or log JSON lines "
            "with --payload-log-format jsonl (PIXELSERVE_PAYLOAD_LOG_FORMAT=jsonl)"
        ) from exc


class PayloadLog:
    def __init__(
        self,
        directory: Path | str,
        *,
        rate: float = 1.0,
        models: Iterable[str] = (),
        tasks: Iterable[LoggedTask] = (),
        fmt: ShardFormat = "parquet",
        shard_rows: int = 10_000,
        shard_s: float = 300.0,
        buffer: int = 1024,
        seed: int | None = None,
        on_count: OnCount | None = None,
        opener: ShardOpener = open_shard,
        staging: Path | None = None,
        backlog: int = 100,
        retry_s: float = 2.0,
    ) -> None:
        """Starts the writer thread; raises PayloadLogError when the format, folder or URI cannot work.
        `seed` makes sampling repeatable (tests); `opener` makes the shard files (tests wrap the real one).
        For a URI, shards are staged under `staging` (default: a folder per URI in the temp dir), at most
        `backlog` of them wait for the store, and an unreachable store is retried after `retry_s`, backing off."""
        if not 0.0 <= rate <= 1.0:
            raise PayloadLogError(f"payload_log_rate must be within 0..1, got {rate}")
        if fmt == "parquet":
            _require_pyarrow()
        self._token = new_id()[:8]
        self._uploader: Uploader | None = None
        self.location = str(directory)  # for messages: a URI without any user or password
        store = None
        if isinstance(directory, str):
            try:
                store = ShardStore(directory)
            except ValueError as exc:  # no backend for the scheme, or options it refuses
                raise PayloadLogError(str(exc)) from None
            self.location = store.display
            staging = staging or store.staging_root()
            directory = staging / self._token
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PayloadLogError(f"cannot create the payload log folder {directory}: {exc}") from exc
        self.directory = directory  # where shards are written: for a URI, this log's staging folder
        self.rate = rate
        self.models = frozenset(models)
        self.tasks = frozenset(tasks)
        self.format: ShardFormat = fmt
        self.shard_rows = shard_rows
        self.shard_s = shard_s
        self.written = 0
        self.dropped = 0
        self.failed = 0
        self._on_count = on_count
        self._opener = opener
        self._random = random.Random(seed).random if seed is not None else random.random
        self._queue: queue.Queue[object] = queue.Queue(maxsize=buffer)
        self._lock = threading.Lock()
        self._closed = False
        self._warned = False
        self._sequence = 0
        if store is not None and staging is not None:
            self._uploader = Uploader(store, self._count, staging, directory, backlog=backlog, retry_s=retry_s)
            self._uploader.adopt()
        self._open: dict[tuple[str, str], _Open] = {}
        self._thread = threading.Thread(target=self._run, name="pixelserve-payload-log", daemon=True)
        self._thread.start()

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: object) -> PayloadLog | None:
        """The log the settings ask for, or None when `payload_log_dir` is unset (then callers skip it)."""
        if settings.payload_log_dir is None:
            return None
        return cls(
            settings.payload_log_dir,
            rate=settings.payload_log_rate,
            models=settings.payload_log_models,
            tasks=settings.payload_log_tasks,
            fmt=settings.payload_log_format,
            shard_rows=settings.payload_log_shard_rows,
            shard_s=settings.payload_log_shard_s,
            buffer=settings.payload_log_buffer,
            **kwargs,  # type: ignore[arg-type]
        )

    # -- the request path ----------------------------------------------------------------------------------

    def sample(self, model: str, task: LoggedTask) -> bool:
        """Whether to log this request: the model and task are chosen and the draw falls within the rate."""
        if (self.models and model not in self.models) or (self.tasks and task not in self.tasks):
            return False
        return self.rate >= 1.0 or (self.rate > 0.0 and self._random() < self.rate)

    def offer(self, record: PayloadRecord) -> bool:
        """Queue a record for the writer without ever waiting; False (and counted as dropped) when full."""
        if not self._closed:
            try:
                self._queue.put_nowait(record)
                return True
            except queue.Full:
                pass
        self._count("dropped", record.model, record.images)
        if not self._warned:
            self._warned = True
            log.warning("payload log: buffer full or log closed, dropping records (counted as dropped)")
        return False

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    @property
    def staged(self) -> int:
        """Committed shards waiting for the object store (0 for a folder)."""
        return self._uploader.staged if self._uploader is not None else 0

    # -- control -------------------------------------------------------------------------------------------

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Write everything offered so far and commit the open shards (for a URI: try to upload every staged
        one); False if that took longer than timeout or shards are left staged."""
        if self._closed:
            return not self._thread.is_alive() and self.staged == 0
        marker = _Flush()
        try:
            self._queue.put(marker, timeout=timeout)
        except queue.Full:
            return False
        if not marker.done.wait(timeout):
            return False
        return self._uploader is None or self._uploader.drain(timeout)

    def close(self, timeout: float | None = 30.0) -> None:
        """Write what was offered, commit every shard and stop the writer; later offers are dropped."""
        if self._closed:
            return
        self._closed = True
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            log.warning("payload log: the writer did not take the stop within %s s", timeout)
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("payload log: the writer did not finish within %s s", timeout)
        if self._uploader is not None:
            self._uploader.close(timeout)

    def __enter__(self) -> PayloadLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the writer thread ---------------------------------------------------------------------------------

    def _count(self, event: CountEvent, model: str, rows: int) -> None:
        if rows <= 0:
            return
        with self._lock:
            setattr(self, event, getattr(self, event) + rows)
        if self._on_count is not None:
            try:
                self._on_count(event, model, rows)
            except Exception:
                log.exception("payload log: the count callback failed")

    def _run(self) -> None:
        stop = False
        while not stop:
            try:
                batch = [self._queue.get(timeout=self._wait())]
            except queue.Empty:
                batch = []
            while batch and len(batch) < DRAIN_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            for item in batch:
                if item is _STOP:
                    stop = True
                elif isinstance(item, _Flush):
                    self._commit_all()
                    item.done.set()
                elif isinstance(item, PayloadRecord):
                    self._write(item)
            self._rotate_old()
        self._commit_all()

    def _wait(self) -> float | None:
        """Until the oldest open shard is due to rotate (no timeout while none is open)."""
        if not self._open:
            return None
        oldest = min(entry.opened for entry in self._open.values())
        return max(0.0, oldest + self.shard_s - time.monotonic())

    def _write(self, record: PayloadRecord) -> None:
        try:
            rows = record_rows(record)
        except Exception:
            log.exception("payload log: could not build rows for a %s request to %s", record.task, record.model)
            self._count("failed", record.model, record.images)
            return
        key = (record.model, record.task)
        entry = self._open.get(key)
        try:
            if entry is None:
                entry = self._open[key] = _Open(self._new_shard(record.model, record.task), time.monotonic())
            entry.shard.append(rows)
        except Exception:
            log.exception("payload log: writing a shard of %s failed; its rows are lost", record.model)
            lost = len(rows)
            if entry is not None:
                lost += entry.shard.rows
                self._abort(key)
            self._count("failed", record.model, lost)
            return
        if entry.shard.rows >= self.shard_rows:
            self._commit(key)

    def _new_shard(self, model: str, task: str) -> ShardFile:
        self._sequence += 1
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        name = f"part-{stamp}-{self._token}-{self._sequence:06d}.{self.format}"
        path = self.directory / safe_name(model) / task / name
        return self._opener(path, self.format, task)  # type: ignore[arg-type]

    def _commit(self, key: tuple[str, str]) -> None:
        entry = self._open.pop(key)
        try:
            entry.shard.commit()
        except Exception:
            log.exception("payload log: committing %s failed; its rows are lost", entry.shard.path)
            self._count("failed", key[0], entry.shard.rows)
            self._abort_entry(entry)
            return
        if self._uploader is None:
            self._count("written", key[0], entry.shard.rows)
        else:
            relative = entry.shard.path.relative_to(self.directory).as_posix()
            self._uploader.add(Staged(entry.shard.path, relative, key[0], entry.shard.rows))

    def _abort(self, key: tuple[str, str]) -> None:
        entry = self._open.pop(key, None)
        if entry is not None:
            self._abort_entry(entry)

    @staticmethod
    def _abort_entry(entry: _Open) -> None:
        try:
            entry.shard.abort()
        except Exception:
            log.exception("payload log: could not remove the temp file of %s", entry.shard.path)

    def _commit_all(self) -> None:
        for key in list(self._open):
            self._commit(key)

    def _rotate_old(self) -> None:
        now = time.monotonic()
        for key, entry in list(self._open.items()):
            if now - entry.opened >= self.shard_s:
                self._commit(key)
