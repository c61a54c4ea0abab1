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
(HTTP), ``user_agent`` and ``key`` (the fingerprint of the API key used, when keys are on). Credentials (the API
key header, ``authorization``) are never logged.
"""

from __future__ import annotations

import contextlib
import itertools
import secrets
import sys
import threading
import time
from collections import deque
from datetime import datetime, timezone
from typing import IO, TYPE_CHECKING, Any

import orjson

from ..context import REQUEST_ID_HEADER, RequestContext
from ..hooks import RequestHook

if TYPE_CHECKING:
    from ..core.calls import Call
    from .metrics import Metrics

MAX_REQUEST_ID = 128  # longer client ids are cut, so a client cannot make the log write arbitrary lines
FLUSH_S = 0.1  # how often the writer writes what has queued


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


class AccessLogHook(RequestHook):
    """The access log as a hook: the edge's request gets its id when it opens (given back to the client) and
    its entry when it closes; the core's requests inside it note the version that served them. Probes and
    scrapes are left out unless `probes`."""

    def __init__(self, log: AccessLog, *, probes: bool) -> None:
        self.log = log
        self.probes = probes

    def opened(self, ctx: RequestContext) -> None:
        if ctx.probe and not self.probes:
            return
        ctx.request_id = self.log.new_request_id(ctx.metadata.get(REQUEST_ID_HEADER))
        ctx.trailers.append((REQUEST_ID_HEADER, ctx.request_id))

    def answered(self, call: Call, result: Any) -> None:
        self._served(call)

    def failed(self, call: Call, error: BaseException) -> None:
        self._served(call)

    @staticmethod
    def _served(call: Call) -> None:
        if call.context is not None and call.served is not None:
            call.context.model, call.context.version = call.served.name, call.served.version

    def closed(self, ctx: RequestContext) -> None:
        if not ctx.request_id:
            return
        entry: dict[str, Any] = {"started": ctx.started, "protocol": "http" if ctx.protocol == "rest" else "grpc"}
        if ctx.protocol == "rest":
            entry |= {"method": ctx.method, "path": ctx.path, "status": ctx.status or 500}
        else:
            entry |= {"rpc": ctx.name, "code": ctx.status}
        entry |= {
            "duration_ms": round((time.perf_counter() - ctx.clock) * 1000, 3),
            "model": ctx.model,
            "version": ctx.version,
            "task": ctx.task,
            "request_id": ctx.request_id,
            "trace_id": ctx.trace_id,
            "client": ctx.client,
        }
        if ctx.key is not None:
            entry["key"] = ctx.key
        if ctx.protocol == "rest":
            entry |= {"bytes_in": ctx.wire_bytes, "bytes_out": ctx.bytes_out}
        entry["user_agent"] = (ctx.metadata.get("user-agent") or "")[:256] or None
        self.log.record(entry)

    async def stop(self) -> None:
        self.log.close()
