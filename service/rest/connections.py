"""Connection hygiene for the HTTP server: deadlines for slow clients, a cap on connections, bounded keep-alive.

uvicorn reads headers and bodies for as long as a client cares to send them, so idle connections, half a
request line or a trickling body hold a socket (and, under a descriptor limit, the accept loop) forever. This
protocol, uvicorn's httptools protocol with guards, closes a connection when
- its request headers are not complete `header_timeout_s` after the request (or the connection) began;
- its body is not complete `body_timeout_s` after the headers;
- the server already holds `max_connections` connections (closed on arrival, before any byte is read);
and ends keep-alive after `max_keepalive_requests` requests. Each closure is counted in
``pixelserve_connections_closed_total{reason}``, never logged as a traceback. During shutdown a connection
whose client stopped sending its body is closed at once instead of holding the drain for its grace period.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..observe.metrics import Metrics
from ..settings import Settings

log = logging.getLogger(__name__)

STALLED_S = 1.0  # during shutdown: no body bytes for this long means the client stopped sending


class GuardedHttpProtocol(HttpToolsProtocol):
    header_timeout_s: float
    body_timeout_s: float
    max_connections: int
    max_keepalive_requests: int
    metrics: Metrics

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._served_requests = 0
        self.last_data = time.monotonic()

    # -- deadlines ---------------------------------------------------------------------------------------

    def _arm(self, seconds: float, reason: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expire, reason)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self, reason: str) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            log.debug("closing a slow client (%s): %s", reason, self.client)
            self.metrics.connection_closed(reason)
            self.transport.close()

    # -- uvicorn's callbacks -----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.max_connections:
            self.metrics.connection_closed("over_limit")
            transport.close()
            self.transport = transport
            self.parser = None  # type: ignore[assignment]
            return
        super().connection_made(transport)
        self._arm(self.header_timeout_s, "header_timeout")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.parser is None and self not in self.connections:
            return  # refused on arrival: uvicorn never saw it
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.last_data = time.monotonic()
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:
            self._arm(self.header_timeout_s, "header_timeout")

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        self._served_requests += 1
        if self.cycle is not None and self._served_requests >= self.max_keepalive_requests:
            self.cycle.keep_alive = False
        self._arm(self.body_timeout_s, "body_timeout")

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    @property
    def uploading(self) -> bool:
        """A request whose body has not fully arrived."""
        return self.cycle is not None and not self.cycle.response_complete and self.cycle.more_body

    def stalled(self) -> bool:
        return self.uploading and time.monotonic() - self.last_data > STALLED_S

    def shutdown(self) -> None:
        if self.stalled():
            self.metrics.connection_closed("stalled_at_shutdown")
            self.transport.close()
            return
        super().shutdown()


def guarded_protocol(settings: Settings, metrics: Metrics) -> type[GuardedHttpProtocol]:
    """The protocol class for one server, its limits bound from the settings."""
    return type(
        "ServerHttpProtocol",
        (GuardedHttpProtocol,),
        {
            "header_timeout_s": settings.header_timeout_s,
            "body_timeout_s": settings.body_timeout_s,
            "max_connections": settings.max_connections,
            "max_keepalive_requests": settings.max_keepalive_requests,
            "metrics": metrics,
        },
    )


def uploads_in_progress(connections: set[Any]) -> int:
    """Requests whose clients are still sending their bodies (stalled ones do not count): a drain waits for these."""
    return sum(1 for c in connections if isinstance(c, GuardedHttpProtocol) and c.uploading and not c.stalled())
