"""Several server processes on one pair of ports, for machines with cores to spare (``--workers N``).

One Python process is bound by its GIL: its event loop, HTTP parsing and gRPC calls share one core however
many the machine has. With ``--workers N`` this supervisor starts N ordinary server processes, each with its
own sessions and batcher, and every one binds the HTTP and gRPC ports with SO_REUSEPORT, so the kernel
spreads connections over them. What must look like one server stays one:

- Prometheus metrics: every worker writes to prometheus-client's multiprocess files and /metrics on any
  worker renders the sum (gauges of in-flight and queued work add up, model states take the maximum).
- V2 statistics: each worker publishes a snapshot of its counters next to those files a few times a second,
  and /v2/models/stats on any worker answers the sum of all (`StatsExchange`).
- Shutdown: SIGTERM or SIGINT is passed to every worker, which drains as a single server would; the
  supervisor waits for all of them. A worker that dies on its own is restarted.
- Repository control (load/unload) would reach only the worker that received it, so it is refused with
  several workers: change the repository on disk instead, and every worker's hot reload applies it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..core.types import BatchSizeStats, ModelStats
from ..settings import Settings

log = logging.getLogger(__name__)

WORKER_ENV = "PIXELSERVE_WORKER_INDEX"
SUPERVISOR_ENV = "PIXELSERVE_SUPERVISOR_PID"
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
STATS_PREFIX = "v2-stats-"
PUBLISH_INTERVAL_S = 0.2
RESTART_BACKOFF_S = 1.0


def worker_index() -> int | None:
    """This process's index when it is a worker started by the supervisor, else None."""
    value = os.environ.get(WORKER_ENV)
    return int(value) if value is not None and value.isascii() and value.isdigit() else None


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def follow_supervisor() -> None:
    """A worker gets SIGTERM (and drains) when its supervisor dies, even by SIGKILL, instead of serving on as
    an orphan that holds the ports. Linux only (prctl); elsewhere a killed supervisor leaves its workers."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    supervisor = os.environ.get(SUPERVISOR_ENV)
    if supervisor and os.getppid() != int(supervisor):  # it died before the prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def reserve_port(host: str, port: int) -> tuple[socket.socket, int]:
    """A port every worker can bind too: an explicit one, or a free one when `port` is 0. The socket stays
    open (bound, never listening) until the workers exit, so nothing else takes the port meanwhile."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock, int(sock.getsockname()[1])


def supervise(settings: Settings, argv: list[str]) -> int:
    """Run `settings.workers` server processes until a signal; returns the worst exit status."""
    reserved = [reserve_port(settings.http_host, settings.http_port), reserve_port(settings.http_host,
                                                                                   settings.grpc_port)]  # fmt: skip
    (_, http_port), (_, grpc_port) = reserved
    with tempfile.TemporaryDirectory(prefix="pixelserve-workers-") as shared:
        env = {**os.environ, METRICS_DIR_ENV: shared, "PIXELSERVE_HTTP_PORT": str(http_port),
               "PIXELSERVE_GRPC_PORT": str(grpc_port)}  # fmt: skip
        command = [sys.executable, "-m", "pixelserve", "serve", *_without_ports(argv)]
        log.info("supervisor: %d workers on HTTP %d and gRPC %d", settings.workers, http_port, grpc_port)
        workers = {i: _start(command, env, i) for i in range(settings.workers)}
        stopping = False

        def forward(sig: int, _frame: object) -> None:
            nonlocal stopping
            stopping = True
            for process in workers.values():
                if process.poll() is None:
                    process.send_signal(sig)

        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            while not stopping or any(p.poll() is None for p in workers.values()):
                time.sleep(0.2)
                for i, process in list(workers.items()):
                    if process.poll() is not None and not stopping:
                        log.error("worker %d (pid %d) exited with %s; restarting it", i, process.pid,
                                  process.returncode)  # fmt: skip
                        _mark_dead(process.pid)
                        time.sleep(RESTART_BACKOFF_S)
                        workers[i] = _start(command, env, i)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for sock, _ in reserved:
                sock.close()
        for process in workers.values():
            _mark_dead(process.pid)
        return max((p.returncode or 0) for p in workers.values())


def _without_ports(argv: list[str]) -> list[str]:
    """The worker command line: the ports come from the environment, set to what the supervisor reserved."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--http-port", "--grpc-port"):
            skip = True
            continue
        if arg.startswith(("--http-port=", "--grpc-port=")):
            continue
        out.append(arg)
    return out


def _start(command: list[str], env: dict[str, str], index: int) -> subprocess.Popen:
    return subprocess.Popen(command, env={**env, WORKER_ENV: str(index), SUPERVISOR_ENV: str(os.getpid())})


def _mark_dead(pid: int) -> None:
    with contextlib.suppress(Exception):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


class StatsExchange:
    """V2 statistics across workers: each publishes its snapshot, each answers the sum of all."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / f"{STATS_PREFIX}{os.getpid()}.json"
        self._task: asyncio.Task[None] | None = None

    def start(self, snapshot: object) -> None:
        """`snapshot()` returns this worker's current list[ModelStats]; it is written a few times a second."""

        async def publish() -> None:
            last = None
            while True:
                data = json.dumps([dataclasses.asdict(s) for s in snapshot()])  # type: ignore[operator]
                if data != last:
                    temporary = self.path.with_suffix(".tmp")
                    temporary.write_text(data)
                    os.replace(temporary, self.path)
                    last = data
                await asyncio.sleep(PUBLISH_INTERVAL_S)

        self._task = asyncio.get_running_loop().create_task(publish(), name="stats-exchange")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(OSError):
            self.path.unlink()

    def merged(self, own: list[ModelStats]) -> list[ModelStats]:
        """This worker's live counters plus the other workers' latest snapshots, per model version."""
        totals = {(s.name, s.version): s for s in own}
        for path in self.directory.glob(f"{STATS_PREFIX}*.json"):
            if path == self.path:
                continue
            try:
                others = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # a worker that is exiting
            for entry in others:
                batches = [BatchSizeStats(**b) for b in entry.pop("batches")]
                stats = ModelStats(**entry, batches=batches)
                key = (stats.name, stats.version)
                if key in totals:
                    totals[key] = _add(totals[key], stats)
        return [totals[k] for k in sorted(totals)]


def _add(a: ModelStats, b: ModelStats) -> ModelStats:
    sizes: dict[int, BatchSizeStats] = {s.batch_size: s for s in a.batches}
    for s in b.batches:
        if s.batch_size in sizes:
            mine = sizes[s.batch_size]
            s = BatchSizeStats(s.batch_size, mine.count + s.count, mine.compute_input_ns + s.compute_input_ns,
                               mine.compute_infer_ns + s.compute_infer_ns,
                               mine.compute_output_ns + s.compute_output_ns)  # fmt: skip
        sizes[s.batch_size] = s
    summed = {
        f.name: getattr(a, f.name) + getattr(b, f.name)
        for f in dataclasses.fields(ModelStats)
        if f.name not in ("name", "version", "last_inference_ms", "batches")
    }
    return ModelStats(name=a.name, version=a.version, last_inference_ms=max(a.last_inference_ms, b.last_inference_ms),
                      batches=[sizes[k] for k in sorted(sizes)], **summed)  # fmt: skip
