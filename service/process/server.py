"""One process, one event loop: uvicorn (REST) and grpc.aio side by side, sharing one core.

Shutdown on SIGTERM or SIGINT, in phases, one log line each:
1. readiness goes false (``/v2/health/ready`` 503, gRPC health NOT_SERVING) while both servers keep serving,
   so a load balancer stops routing here without any request being refused;
2. wait while requests are in flight, up to ``drain_grace_s``;
3. stop gRPC (with the remaining grace) and uvicorn (stops accepting, finishes open requests);
4. close the core (release sessions). A second signal skips the waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from ..core.core import InferenceCore
from ..grpc.server import create_grpc_server
from ..observe.metrics import Metrics
from ..rest.app import INTERNAL, create_app
from ..rest.connections import guarded_protocol, uploads_in_progress
from ..security.keys import KeyRing
from ..security.tls import ServerTls
from ..settings import Settings
from .workers import METRICS_DIR_ENV, StatsExchange, worker_index

log = logging.getLogger(__name__)

POLL_S = 0.05
MIN_GRPC_GRACE_S = 1.0
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class _HttpServer(uvicorn.Server):
    """uvicorn without its own signal handling (`serve` owns the signals for both servers), and with TLS
    handshakes bounded by the header deadline (asyncio's default is 60 s: a client could hold a connection
    that long by starting a handshake and stalling)."""

    handshake_timeout_s = 10.0

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's start-up for sockets already bound (what `serve` passes), plus the handshake deadline."""
        config = self.config
        if config.ssl is None or sockets is None:
            await super().startup(sockets)
            return
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            raise SystemExit(3)  # uvicorn's STARTUP_FAILURE

        def create_protocol(_loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Protocol:
            return config.http_protocol_class(config=config, server_state=self.server_state,  # type: ignore[call-arg]
                                              app_state=self.lifespan.state, _loop=_loop)  # fmt: skip

        loop = asyncio.get_running_loop()
        tls = {"ssl": config.ssl, "ssl_handshake_timeout": self.handshake_timeout_s, "backlog": config.backlog}
        self.servers = [await loop.create_server(create_protocol, sock=sock, **tls) for sock in sockets]
        self.started = True


class _Stop:
    """Set by the first signal; a second one skips the waiting (and uvicorn's wait for open requests)."""

    def __init__(self, http: _HttpServer) -> None:
        self.requested = asyncio.Event()
        self.forced = False
        self._http = http

    def on_signal(self, sig: signal.Signals) -> None:
        if self.requested.is_set():
            log.warning("shutdown: second %s, skipping the drain", sig.name)
            self.forced = self._http.force_exit = True
        else:
            log.info("shutdown: %s received", sig.name)
        self.requested.set()


def raise_descriptor_limit() -> None:
    """Use the hard descriptor limit: the connection cap, not the operating system's default soft limit of
    1024, should be what bounds open connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class QuietLoopErrors:
    """The event loop's exception handler, with repeats of one message (accept() failing while descriptors
    are exhausted retries many times a second) logged once per `every_s` with a count, not as a flood."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self._last: dict[str, tuple[float, int]] = {}

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict) -> None:
        message = str(context.get("message", "event loop error"))
        now = time.monotonic()
        last, suppressed = self._last.get(message, (0.0, 0))
        if now - last < self.every_s:
            self._last[message] = (last, suppressed + 1)
            return
        self._last[message] = (now, 0)
        error = context.get("exception")
        more = f" ({suppressed} more like it in the last {self.every_s:.0f} s)" if suppressed else ""
        log.error("%s%s: %s", message, more, f"{type(error).__name__}: {error}" if error else "")


def http_socket(settings: Settings) -> socket.socket:
    """The listening socket, bound here so that several workers can share the port (SO_REUSEPORT)."""
    host = settings.http_host
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if settings.workers > 1:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, settings.http_port))
    except OSError as exc:
        sock.close()
        raise RuntimeError(f"HTTP server cannot bind {host}:{settings.http_port}: {exc}") from exc
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def _run_http(server: _HttpServer, sock: socket.socket) -> None:
    try:
        await server.serve(sockets=[sock])
    except SystemExit as exc:  # uvicorn exits the process when it cannot bind; report it as an error instead
        raise RuntimeError(f"HTTP server failed to start (exit {exc.code}); see the log above") from exc


async def warm_routes(app: ASGIApp) -> None:
    """FastAPI builds each router's routes (their pydantic fields) on the first request that reaches them:
    about half a second on the event loop, during which every other client, health probes included, waits.
    One request for a path no route has, before the listener opens, reaches and builds them all."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": "/warm-up", "raw_path": b"/warm-up", "root_path": "", "query_string": b"", "headers": [],
        "client": ("127.0.0.1", 0), "server": ("127.0.0.1", 0), "state": {},
        "extensions": {INTERNAL: {}},  # not a client's: neither logged nor traced
    }  # fmt: skip

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        pass

    await app(scope, receive, send)


async def _drain(core: InferenceCore, http: _HttpServer, stop: _Stop, deadline: float) -> None:
    """Wait while requests are in flight: in the core, or still sending their body (clients that stopped
    sending do not hold the drain)."""
    connections = http.server_state.connections
    while (
        (core.in_flight > 0 or uploads_in_progress(connections) > 0) and not stop.forced and time.monotonic() < deadline
    ):
        await asyncio.sleep(POLL_S)


async def serve(core: InferenceCore, settings: Settings, metrics: Metrics, *, keys: KeyRing | None = None,
                tls: ServerTls | None = None) -> None:  # fmt: skip
    """Serve REST and gRPC until a signal (or the HTTP server ending), then shut down gracefully. `keys` and
    `tls`: the API keys and TLS files both ports share (default: read from the settings).

    A single server listens first and loads its models after, so probes see it alive (and not ready) while it
    loads. A worker of several loads first: on a shared port the kernel would hand connections to a worker
    that cannot answer them yet, while the others can."""
    worker = worker_index() is not None
    if worker:
        log.info("worker %d: loading models before listening", worker_index())
        await core.start()
    keys = keys if keys is not None else KeyRing.from_settings(settings)
    tls = tls if tls is not None else ServerTls.from_settings(settings)
    grpc_server = create_grpc_server(core, settings, metrics, keys, tls)
    sock = http_socket(settings)
    app = create_app(core, settings, metrics, keys)
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        lifespan="on",
        log_level=logging.getLevelName(settings.log_level.upper()),
        access_log=False,
        timeout_graceful_shutdown=max(settings.drain_grace_s, 1.0),
        http=guarded_protocol(settings, metrics),
        timeout_keep_alive=settings.keep_alive_timeout_s,
    )
    config.load()
    if tls is not None:
        config.ssl = tls.ssl_context()  # uvicorn's own TLS, with a context that `tls.watch` keeps current
    http = _HttpServer(config)
    http.handshake_timeout_s = settings.header_timeout_s
    stop = _Stop(http)
    loop = asyncio.get_running_loop()
    raise_descriptor_limit()
    loop.set_exception_handler(QuietLoopErrors())
    use_signals = threading.current_thread() is threading.main_thread()
    if use_signals:
        for sig in SIGNALS:
            loop.add_signal_handler(sig, stop.on_signal, sig)
    http_task: asyncio.Task[None] | None = None
    watch = asyncio.create_task(tls.watch()) if tls is not None else None
    exchange: StatsExchange | None = None  # a worker's view of the other workers' statistics
    try:
        await grpc_server.start()
        await warm_routes(app)
        http_task = asyncio.create_task(_run_http(http, sock))
        while not http.started and not http_task.done():
            await asyncio.sleep(POLL_S)
        if http_task.done():
            await http_task  # raises the startup failure
        port = sock.getsockname()[1]
        loading = "" if worker else "; loading models"
        secure = f", TLS{' (mutual)' if tls.mutual else ''} on both" if tls is not None else ""
        log.info("start: HTTP on %s:%d, gRPC on port %d%s%s", settings.http_host, port, settings.grpc_port, secure,
                 loading)  # fmt: skip
        if not worker:
            await core.start()
        else:
            exchange = core.stats_exchange = StatsExchange(Path(os.environ[METRICS_DIR_ENV]))
            exchange.start(core.local_stats)
        ready = sum(status.state == "ready" for status in core.index())
        log.info("ready: %d model version(s) serving", ready)

        stopped = asyncio.create_task(stop.requested.wait())
        await asyncio.wait({stopped, http_task}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()

        deadline = time.monotonic() + settings.drain_grace_s
        core.begin_shutdown()
        log.info("drain: readiness off, %d request(s) in flight, grace %.1fs", core.in_flight, settings.drain_grace_s)
        await _drain(core, http, stop, deadline)

        grace = 0.0 if stop.forced else max(deadline - time.monotonic(), MIN_GRPC_GRACE_S)
        log.info("stop: closing listeners with %d request(s) in flight, gRPC grace %.1fs", core.in_flight, grace)
        http.should_exit = True
        await asyncio.gather(grpc_server.stop(grace), http_task)
    finally:
        if watch is not None:
            watch.cancel()
        if http_task is not None and not http_task.done():  # an error above: stop without waiting
            http.should_exit = http.force_exit = True
            with contextlib.suppress(Exception):
                await http_task
        await grpc_server.stop(0)  # a no-op after a graceful stop
        if exchange is not None:
            await exchange.stop()
        await core.close()  # the hooks stop with it: spans flushed, access log and payload shards written
        sock.close()
        if use_signals:
            for sig in SIGNALS:
                loop.remove_signal_handler(sig)
        log.info("closed: core released")
