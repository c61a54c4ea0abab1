"""REST and gRPC servers around one core over real loopback, with a client for each: the setup the tests that
compare or observe both transports share."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc
import httpx

from pixelserve.service.core.types import Core
from pixelserve.service.observe.metrics import Metrics
from pixelserve.service.settings import Settings
from tests.service.grpc_support import grpc_server
from tests.service.rest_support import rest_server


@contextlib.asynccontextmanager
async def both_transports(
    core: Core, settings: Settings, metrics: Metrics
) -> AsyncIterator[tuple[httpx.AsyncClient, grpc.aio.Channel]]:
    async with (
        rest_server(core, settings, metrics) as url,
        grpc_server(core, settings, metrics) as address,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
        grpc.aio.insecure_channel(address) as channel,
    ):
        yield http, channel
