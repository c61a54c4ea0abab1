"""The access log: one JSON line per request on stderr, written by a thread of its own so a request never
waits for it.

A request only puts a small dict into a bounded queue (``access_log_buffer`` entries); when the queue is
full (stderr blocked, a flood of requests) the entry is dropped and counted in
``pixelserve_access_log_dropped_total``, never waited for. The writer formats and writes batches of lines.

Fields: ``time`` (UTC ISO 8601, when the request arrived), ``protocol`` (http or grpc), ``method`` and
``path`` (HTTP) or ``rpc`` (gRPC), ``status`` (HTTP status) or ``code`` (gRPC status name), ``duration_ms``,
``model`` and ``version`` (the version that served it; the model named in the route when none did),
``task``, ``request_id`` (the client's ``x-request-id`` or a new
one, given back in the response), ``trace_id`` with tracing on, ``client``, ``bytes_in`` / ``bytes_out``
(HTTP) and ``user_agent``. Credentials (the API key header, ``authorization``) are never logged.
"""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
import time
import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import IO, TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from pixelserve.service.metrics import Metrics

REQUEST_ID_HEADER = "x-request-id"
MAX_REQUEST_ID = 128  # longer client ids are cut, so a client cannot make the log write arbitrary lines
_STOP = object()


@dataclass(slots=True)
class RequestNote:
    """What the log learns about a request while it runs: its id (payload log rows carry the same), and the
    model version the core served it with."""

    request_id: str
    model: str | None = None
    version: int | None = None


current: ContextVar[RequestNote | None] = ContextVar("pixelserve_request", default=None)
# The transport of the request being handled ("rest", "grpc"), set by the adapters' request tracker; empty
# for the core's in-process callers (batch scoring, verify), whose requests are not logged.
protocol: ContextVar[str] = ContextVar("pixelserve_protocol", default="")


def note_served(model: str, version: int) -> None:
    """Called by the core when it leases a version for the current request."""
    note = current.get()
    if note is not None:
        note.model, note.version = model, version


def current_request_id() -> str:
    note = current.get()
    return note.request_id if note is not None else ""


def new_request_id(given: str | None) -> str:
    """The client's id when it sent a usable one (printable ASCII, at most 128 characters), else a new one."""
    if given and given.isascii() and given.isprintable():
        return given[:MAX_REQUEST_ID]
    return uuid.uuid4().hex


class AccessLog:
    def __init__(self, metrics: Metrics, capacity: int, stream: IO[bytes] | None = None) -> None:
        self._metrics = metrics
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=capacity)
        self._stream = stream if stream is not None else sys.stderr.buffer
        self._thread = threading.Thread(target=self._write, name="pixelserve-access-log", daemon=True)
        self._thread.start()

    def record(self, entry: dict[str, Any]) -> None:
        """Queue one request's entry; drop it (counted) rather than wait when the writer is behind."""
        try:
            self._queue.put_nowait(entry)
        except queue.Full:
            self._metrics.access_log_dropped.inc()

    def _write(self) -> None:
        while True:
            entries = [self._queue.get()]
            with contextlib.suppress(queue.Empty):
                while len(entries) < 512:
                    entries.append(self._queue.get_nowait())
            stop = any(entry is _STOP for entry in entries)
            lines = b"".join(_line(entry) for entry in entries if entry is not _STOP)
            with contextlib.suppress(OSError, ValueError):  # a closed or broken stderr loses lines, not requests
                self._stream.write(lines)
                self._stream.flush()
            if stop:
                return

    def close(self, timeout_s: float = 2.0) -> None:
        """Write what is queued (for up to `timeout_s`), then stop the writer."""
        with contextlib.suppress(queue.Full):
            self._queue.put(_STOP, timeout=timeout_s)
        self._thread.join(timeout_s)


def _line(entry: dict[str, Any]) -> bytes:
    started = entry.pop("started")
    entry = {"time": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="milliseconds"), **entry}
    return orjson.dumps({k: v for k, v in entry.items() if v is not None and v != ""}) + b"\n"


def now() -> float:
    return time.time()
