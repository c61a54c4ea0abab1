"""The access log: one JSON line per request on stderr, written by a thread of its own so a request never
waits for it.

A request only appends a small dict to a bounded queue (``access_log_buffer`` entries); when the queue is
full (stderr blocked, a flood of requests) the entry is dropped and counted in
``pixelserve_access_log_dropped_total``, never waited for. Every 100 ms the writer formats and writes what has
queued, in one write.

Fields: ``time`` (UTC ISO 8601, when the request arrived), ``protocol`` (http or grpc), ``method`` and
``path`` (HTTP) or ``rpc`` (gRPC), ``status`` (HTTP status) or ``code`` (gRPC status name), ``duration_ms``,
``model`` and ``version`` (the version that served it; the model named in the route when none did),
``task``, ``request_id`` (the client's ``x-request-id`` or a new
one, given back in the response), ``trace_id`` with tracing on, ``client``, ``bytes_in`` / ``bytes_out``
(HTTP) and ``user_agent``. Credentials (the API key header, ``authorization``) are never logged.
"""

from __future__ import annotations

import contextlib
import itertools
import secrets
import sys
import threading
import time
from collections import deque
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import IO, TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from .metrics import Metrics

REQUEST_ID_HEADER = "x-request-id"
MAX_REQUEST_ID = 128  # longer client ids are cut, so a client cannot make the log write arbitrary lines
FLUSH_S = 0.1  # how often the writer writes what has queued


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


class RequestIds:
    """Request ids: the client's when it sent a usable one (printable ASCII, cut to 128 characters), else 32 hex
    digits, a random prefix of this log's and a counter (a uuid4 would cost a syscall per request)."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._count = itertools.count()

    def __call__(self, given: str | None) -> str:
        if given and given.isascii() and given.isprintable():
            return given[:MAX_REQUEST_ID]
        return f"{self._prefix}{next(self._count):016x}"


class AccessLog:
    def __init__(self, metrics: Metrics, capacity: int, stream: IO[bytes] | None = None,
                 flush_s: float = FLUSH_S) -> None:  # fmt: skip
        self._metrics = metrics
        self.new_request_id = RequestIds()
        self._capacity = capacity
        self._pending: deque[dict[str, Any]] = deque()
        self._stream = stream if stream is not None else sys.stderr.buffer
        self._flush_s = flush_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write, name="pixelserve-access-log", daemon=True)
        self._thread.start()

    def record(self, entry: dict[str, Any]) -> None:
        """Queue one request's entry; drop it (counted) rather than wait when the writer is behind.

        A deque append, no lock and no wake-up: the writer looks every `flush_s`, so a busy server pays no
        thread hand-over per request."""
        if len(self._pending) >= self._capacity:
            self._metrics.access_log_dropped.inc()
            return
        self._pending.append(entry)

    def _drain(self) -> None:
        lines = []
        with contextlib.suppress(IndexError):
            while True:
                lines.append(_line(self._pending.popleft()))
        if lines:
            with contextlib.suppress(OSError, ValueError):  # a closed or broken stderr loses lines, not requests
                self._stream.write(b"".join(lines))
                self._stream.flush()

    def _write(self) -> None:
        while not self._stop.wait(self._flush_s):
            self._drain()
        self._drain()

    def close(self, timeout_s: float = 2.0) -> None:
        """Write what is queued (for up to `timeout_s`), then stop the writer."""
        self._stop.set()
        self._thread.join(timeout_s)


def _line(entry: dict[str, Any]) -> bytes:
    started = entry.pop("started")
    entry = {"time": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="milliseconds"), **entry}
    return orjson.dumps({k: v for k, v in entry.items() if v is not None and v != ""}) + b"\n"


def now() -> float:
    return time.time()
