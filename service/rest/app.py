"""The REST app factory: task API, KServe V2, health, /metrics, one error handler, optional API key."""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import Depends, FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Scope

import pixelserve

from ..core.types import Core
from ..observe.metrics import Metrics
from ..security.keys import KeyRing
from ..settings import Settings
from .artifacts import create_artifact_router
from .auth import api_key_guard
from .endpoints import Endpoints
from .errors import install_error_handler
from .fastpath import FastPath
from .limits import BodyLimitMiddleware
from .playground import install_playground
from .tasks import create_task_router
from .v2 import create_v2_health_router, create_v2_router

DESCRIPTION = """Image classification, denoising and reconstruction (anomaly score) on ONNX models.

* Task API: `POST /v1/models/{name}:classify|:denoise|:reconstruct|:encode` with a raw image body,
  multipart files or `{"images": [base64, ...]}`.
* KServe V2 / Open Inference Protocol under `/v2` (works with `tritonclient.http`).
* Errors: `{"error": {"code", "message"}}` on `/v1`, `{"error": "message"}` on `/v2`.
"""


INTERNAL = "pixelserve.internal"  # a scope extension marking the server's own requests (route warm-up)


def is_internal(scope: Scope) -> bool:
    return INTERNAL in (scope.get("extensions") or ())


def create_app(core: Core, settings: Settings, metrics: Metrics, keys: KeyRing | None = None) -> ASGIApp:
    """A new app around a started (or starting) core; no globals, so tests can build several. `keys`: the API
    keys, shared with the gRPC server (default: read from the settings).

    The hot routes are served by `FastPath` in front of FastAPI; CORS, when configured, wraps both; when the
    core's operations hooks work at the edge (access log, tracing), the request edge wraps it all."""
    keys = keys if keys is not None else KeyRing.from_settings(settings)
    endpoints = Endpoints(core, settings)  # one set for both edges
    app: ASGIApp = FastPath(create_api(core, settings, metrics, endpoints, keys), endpoints, keys)
    if settings.cors_origins:
        app = CORSMiddleware(app, allow_origins=settings.cors_origins, allow_methods=["*"], allow_headers=["*"])
    if core.hooks.edge:
        from .edge import RequestEdge

        app = RequestEdge(app, core.hooks, keys.identify if keys is not None else None)
    return app


def _no_native_telemetry() -> dict[str, Any]:
    """FastAPI 0.16x traces and meters every request through the global OpenTelemetry providers by default:
    a cost when tracing is off, and a second server span when it is on (the request span is ours)."""
    if "telemetry" not in inspect.signature(FastAPI).parameters:
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}}


def create_api(core: Core, settings: Settings, metrics: Metrics, endpoints: Endpoints | None = None,
               keys: KeyRing | None = None) -> FastAPI:  # fmt: skip
    """Every route as FastAPI: the OpenAPI schema, and everything the fast path does not answer itself; the hot
    routes call the fast path's `endpoints`. `keys`: default, read from the settings."""
    keys = keys if keys is not None else KeyRing.from_settings(settings)
    endpoints = endpoints if endpoints is not None else Endpoints(core, settings)
    app = FastAPI(title="pixelserve", version=pixelserve.__version__, description=DESCRIPTION, **_no_native_telemetry())
    install_error_handler(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)

    protected = [Depends(api_key_guard(keys))] if keys is not None else []
    app.include_router(create_v2_health_router(core))
    app.include_router(create_task_router(core, endpoints), dependencies=protected)
    app.include_router(create_v2_router(core, settings, endpoints), dependencies=protected)
    app.include_router(create_artifact_router(core, settings), dependencies=protected)
    install_playground(app)  # public: the page holds no data and asks for the key on 401

    @app.get("/metrics", tags=["health"], include_in_schema=False)
    async def prometheus_metrics() -> Response:
        body, content_type = metrics.render()
        return Response(content=body, media_type=content_type)

    return app
