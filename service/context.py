"""One request as its transport saw it, set once at the edge (REST middleware, gRPC registration wrapper).

Everything an operations hook needs from the wire is read into it while the request is live, so no hook ever
touches a finished call (a grpc.aio context read after its stream was cancelled crashes the process). The
core and the hooks read it through `current`; adapters never pass it by hand.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

REQUEST_ID_HEADER = "x-request-id"


@dataclass(slots=True)
class RequestContext:
    """`protocol` "rest" or "grpc"; `name` the route or RPC; `probe` a health check or scrape (hooks may skip
    it). Hooks fill `request_id`, `trace_id` and `trace` (their own state, opaque to everything else) and add
    `headers` (sent first: HTTP headers, gRPC initial metadata) and `trailers` (HTTP headers too, gRPC
    trailing metadata). The core notes the served `model` and `version`; the edge sets `status` at the end."""

    protocol: str
    name: str
    metadata: dict[str, str]  # request headers or invocation metadata, lower-case keys, first value wins
    client: str | None = None
    key: str | None = None  # the fingerprint of the API key presented, when it is a valid one
    method: str | None = None  # HTTP
    path: str | None = None  # HTTP
    task: str | None = None
    model: str | None = None
    version: int | None = None
    probe: bool = False
    wire_bytes: int | None = None
    bytes_out: int = 0
    status: int | str = 0  # HTTP status or gRPC status name
    request_id: str = ""
    trace_id: str = ""
    trace: Any = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    trailers: list[tuple[str, str]] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    clock: float = field(default_factory=time.perf_counter)


current: ContextVar[RequestContext | None] = ContextVar("pixelserve_request", default=None)
