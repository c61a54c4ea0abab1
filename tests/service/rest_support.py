"""Start the real REST server for a test: uvicorn on the test's event loop around the shared core fixture, or
the whole `python -m pixelserve.service` process (REST + gRPC) for signal and scrape tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvicorn

from pixelserve.service.core.types import Core
from pixelserve.service.observe.metrics import Metrics
from pixelserve.service.rest.app import create_app
from pixelserve.service.settings import Settings
from tests.service.grpc_support import free_port
from tests.service.models import reference_session

ROOT = Path(__file__).resolve().parents[2]


class _TestServer(uvicorn.Server):
    """Leaves pytest's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@asynccontextmanager
async def rest_server(core: Core, settings: Settings, metrics: Metrics, **overrides: Any) -> AsyncIterator[str]:
    """Yields the base URL; `overrides` change settings of the app only (not of the core)."""
    settings = settings.model_copy(update=overrides)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(core, settings, metrics)
    config = uvicorn.Config(app, lifespan="on", log_level="warning")
    server = _TestServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


def reference(repo: Path, name: str, images: np.ndarray, version: int = 1) -> dict[str, np.ndarray]:
    """Every output of an in-process CPU session on the same model file."""
    session = reference_session(repo, name, version)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {"image": images}), strict=True))


class ServerProcess:
    """`python -m pixelserve.service` on free loopback ports, with its log captured to a file."""

    def __init__(self, repository: Path, log_path: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.http_port, self.grpc_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.log_path = log_path
        command = [
            sys.executable, "-m", "pixelserve.service",
            "--model-repository", str(repository),
            "--http-host", "127.0.0.1",
            "--http-port", str(self.http_port),
            "--grpc-port", str(self.grpc_port),
            "--device", "cpu",
            "--intra-op-threads", "1",
            "--inter-op-threads", "1",
            *args,
        ]  # fmt: skip
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            command, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"server exited early:\n{self.log()}"
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/v2/health/ready", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.05)
        raise AssertionError(f"server not ready after {timeout_s}s:\n{self.log()}")

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout_s: float = 30.0) -> int:
        return self.process.wait(timeout=timeout_s)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()


@contextlib.contextmanager
def server_process(repository: Path, log_path: Path, *args: str, **kwargs: Any) -> Iterator[ServerProcess]:
    server = ServerProcess(repository, log_path, *args, **kwargs)
    try:
        server.wait_ready()
        yield server
    finally:
        server.close()
