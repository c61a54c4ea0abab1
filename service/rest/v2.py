"""KServe V2 / Open Inference Protocol over HTTP, shaped so ``tritonclient.http`` works unchanged.

The protocol is decided in `pixelserve.service.protocol.v2`; these routes only read bodies, call it and write JSON
(plus the binary tensor data extension for inference, see `v2_codec`). Inference is the endpoint the fast path
answers (endpoints.py); its route here documents it and calls the same function. Besides the core protocol: the Triton
extensions binary_tensor_data, classification, model_configuration, model_repository and statistics.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from ..core.offload import Offloader
from ..core.types import Core
from ..errors import InvalidInput, ModelNotReady
from ..protocol.v2 import metadata as v2_metadata
from ..protocol.v2.metadata import model_ref
from ..settings import Settings
from .endpoints import Endpoints, response
from .limits import check_json_size, read_body
from .routing import add_model_routes
from .v2_codec import parse_json as parse_json_body


class JSON(Response):
    """orjson-encoded JSON: the V2 bodies are plain dicts and lists."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


async def _json_object(request: Request, settings: Settings, offload: Offloader) -> dict[str, Any]:
    """A repository route's JSON body: a few fields, so bounded by the JSON limit before it is parsed."""
    body = await read_body(request.scope, request.receive, settings.max_request_bytes, offload)
    check_json_size(len(body), settings.max_json_bytes, "the JSON body")
    if not body.strip():
        return {}
    parsed = await offload.sized(len(body), parse_json_body, body, "request")
    if not isinstance(parsed, dict):
        raise InvalidInput("request body must be a JSON object")
    return parsed


def create_v2_health_router(core: Core) -> APIRouter:
    """Liveness and readiness stay open even with an API key: probes carry no credentials."""
    router = APIRouter(tags=["health"])

    @router.get("/v2/health/live")
    async def live() -> Response:
        return Response(status_code=200 if core.is_live() else 503)

    @router.get("/v2/health/ready")
    async def ready() -> Response:
        """503 while models load and once shutdown has begun, so load balancers stop sending traffic."""
        return Response(status_code=200 if core.is_ready() else 503)

    return router


def create_v2_router(core: Core, settings: Settings, endpoints: Endpoints) -> APIRouter:
    offload = core.offload
    router = APIRouter(tags=["kserve-v2"])

    @router.get("/v2")
    async def server_metadata() -> JSON:
        return JSON(v2_metadata.server_metadata())

    # Statistics first: "/v2/models/stats" must not be taken for a model named "stats".
    @router.get("/v2/models/stats")
    async def all_statistics() -> JSON:
        return JSON(v2_metadata.statistics(core.model_stats()))

    async def statistics(name: str, version: str | None = None) -> JSON:
        return JSON(v2_metadata.statistics(core.model_stats(model_ref(name, version))))

    async def metadata(name: str, version: str | None = None) -> JSON:
        return JSON(v2_metadata.model_metadata(core.model_info(model_ref(name, version))))

    async def model_ready(name: str, version: str | None = None) -> Response:
        if not v2_metadata.model_ready(core, model_ref(name, version)):
            raise ModelNotReady(f"model {name!r} is not ready")
        return Response(status_code=200)

    async def config(name: str, version: str | None = None) -> JSON:
        return JSON(v2_metadata.model_config(core.model_info(model_ref(name, version)), settings))

    async def infer(request: Request, name: str, version: str | None = None) -> Response:
        """JSON or binary-tensor inference: UINT8 / FP32 pixels (NHWC, as the metadata says) or BYTES holding
        encoded image files, one element per image. (The fast path answers it; the route documents it.)"""
        return response(await endpoints.v2_infer(request.scope, request.receive, name, version))

    for suffix, endpoint, method in (
        ("/stats", statistics, "GET"),
        ("/ready", model_ready, "GET"),
        ("/config", config, "GET"),
        ("/infer", infer, "POST"),
        ("", metadata, "GET"),
    ):
        add_model_routes(router, "/v2/models/{name}", suffix, endpoint, method)

    @router.post("/v2/repository/index")
    async def repository_index(request: Request) -> JSON:
        """Every version with its state; ``{"ready": true}`` keeps only the ready ones."""
        ready_only = (await _json_object(request, settings, offload)).get("ready", False) is True
        return JSON(v2_metadata.repository_index(core.index(), ready_only=ready_only))

    @router.post("/v2/repository/models/{name}/load")
    async def load(request: Request, name: str) -> Response:
        """(Re)load a model from the repository; config or file overrides are refused, the repository is the
        one source of truth."""
        parameters = (await _json_object(request, settings, offload)).get("parameters") or {}
        if not isinstance(parameters, dict):
            raise InvalidInput("parameters must be a JSON object")
        overrides = sorted(k for k in parameters if k == "config" or k.startswith("file:"))
        if overrides:
            raise InvalidInput(f"load overrides {overrides} are not supported: change the model repository instead")
        await core.load(name)
        return Response(status_code=200)

    @router.post("/v2/repository/models/{name}/unload")
    async def unload(request: Request, name: str) -> Response:
        await _json_object(request, settings, offload)
        await core.unload(name)
        return Response(status_code=200)

    return router
