"""grpc.health.v1.Health computed from the core on every call, so it can never drift from the truth.

"" and our service names answer for the whole server (NOT_SERVING while draining or before any model is
ready); any other name is a model: SERVING when its served version is ready, NOT_FOUND (Check) or
SERVICE_UNKNOWN (Watch) when the repository does not know it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ..core.types import Core, ModelRef

HealthStatus = health_pb2.HealthCheckResponse.ServingStatus
WATCH_INTERVAL_S = 0.5


class HealthServicer(health_pb2_grpc.HealthServicer):
    def __init__(self, core: Core, server_services: Collection[str]) -> None:
        self.core = core
        self.server_services = {"", *server_services}

    def status(self, service: str) -> HealthStatus | None:
        """The current status, or None for a name that is neither our service nor a known model."""
        if service in self.server_services:
            ready = self.core.is_ready()
        elif any(s.name == service for s in self.core.index()):
            ready = self.core.is_ready(ModelRef(service))
        else:
            return None
        return health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        status = self.status(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service or model {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        """Send the status now and again whenever it changes (polled; the core has no change events)."""
        last: HealthStatus | None = None
        while True:
            status = self.status(request.service)
            if status is None:
                status = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
            if status != last:
                yield health_pb2.HealthCheckResponse(status=status)
                last = status
            await asyncio.sleep(WATCH_INTERVAL_S)
