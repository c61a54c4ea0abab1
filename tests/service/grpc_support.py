"""Start the real gRPC server on a free loopback port for a test, around the shared core fixture."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pixelserve.service.core.types import Core
from pixelserve.service.grpc.server import create_grpc_server
from pixelserve.service.observe.metrics import Metrics
from pixelserve.service.settings import Settings


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def grpc_server(core: Core, settings: Settings, metrics: Metrics, **overrides: Any) -> AsyncIterator[str]:
    """Yields the server's address; `overrides` change settings of the server only (not of the core)."""
    settings = settings.model_copy(update={"http_host": "127.0.0.1", "grpc_port": free_port(), **overrides})
    server = create_grpc_server(core, settings, metrics)
    await server.start()
    try:
        yield f"127.0.0.1:{settings.grpc_port}"
    finally:
        await server.stop(None)
