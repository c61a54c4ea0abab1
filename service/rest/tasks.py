"""The task API's FastAPI routes: ``POST /v1/models/{name}[/versions/{version}]:{classify|denoise|reconstruct|
encode}``, ``GET /v1/models`` and ``GET /v1/models/{name}[/versions/{version}]``.

The task routes are the fast path's endpoints (endpoints.py) under FastAPI: they document the API (the query
options and bodies in the OpenAPI schema) and take the multipart uploads the fast path passes on. The index and
the metadata are the task API's (protocol/tasks.py), written as JSON. FastAPI validates nothing of its own here:
the version, the options and the bodies are read by the same rules on either edge.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from ..core.types import DEFAULT_TOP_K, Core, TaskName
from ..protocol import tasks
from .endpoints import Endpoints, json_body, response
from .routing import Endpoint, add_model_routes
from .schemas import ClassifyResponse, EncodeResponse, ErrorBody, ImageResponse, ModelIndex, ModelMetadata

PNG = "image/png"


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


IMAGE_OPTIONS = [
    _query("resize", {"type": "string", "enum": ["stretch", "center-crop", "letterbox"]},
           "how an image is fitted to the model's input (default: the model's)"),
    _query("normalize", {"type": "string", "enum": ["none", "digit"]}, "default: the model's"),
    _query("return_input", {"type": "boolean"}, "also answer with each prepared input image as PNG"),
]  # fmt: skip
TOP_K = _query("top_k", {"type": "integer", "minimum": 1}, f"labels per image (default {DEFAULT_TOP_K})")

UPLOAD_BODY: dict[str, Any] = {
    "required": True,
    "description": "one image as the raw body, several as multipart/form-data files, or base64 in JSON; the "
    "query string's options win over the same options in the body",
    "content": {
        "image/png": {"schema": {"type": "string", "format": "binary"}},
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                    "top_k": {"type": "integer", "minimum": 1},
                    "resize": {"type": "string"},
                    "normalize": {"type": "string"},
                    "return_input": {"type": "boolean"},
                },
            }
        },
        "application/json": {"schema": {"$ref": "#/components/schemas/ImagesRequest"}},
    },
}
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 404, 413, 429, 500, 503, 504)
}
DENOISE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {PNG: {}, "application/json": {"schema": {"$ref": "#/components/schemas/ImageResponse"}}},
        "description": "a PNG (one raw image) or JSON with base64 PNGs",
    }
}

TASKS: dict[TaskName, tuple[str, type, dict[int | str, dict[str, Any]] | None]] = {
    "classify": (
        "Top-k labels per image, plus an out-of-distribution score when the model is paired with an autoencoder.",
        ClassifyResponse,
        None,
    ),
    "reconstruct": ("Reconstruction (base64 PNG), its error and the anomaly verdict per image.", ImageResponse, None),
    "denoise": (
        "The cleaned image: a bare image/png for one raw-body image (or `Accept: image/png`), else JSON.",
        ImageResponse,
        DENOISE_RESPONSES,
    ),
    "encode": ("The latent vector per image (autoencoders with a latent output).", EncodeResponse, None),
}


def _task_route(endpoints: Endpoints, task: TaskName, doc: str) -> Endpoint:
    async def route(request: Request, name: str, version: str | None = None) -> Response:
        return response(await endpoints.task(task, request.scope, request.receive, name, version))

    route.__name__ = task
    route.__doc__ = doc
    return route


def _json(answer: tasks.Answer) -> Response:
    return Response(content=json_body(answer), media_type="application/json")


def create_task_router(core: Core, endpoints: Endpoints) -> APIRouter:
    router = APIRouter(tags=["tasks"], responses=ERRORS)
    prefix = "/v1/models/{name}"
    for task, (doc, answer, responses) in TASKS.items():
        options = [TOP_K, *IMAGE_OPTIONS] if task == "classify" else IMAGE_OPTIONS
        extra = {"requestBody": UPLOAD_BODY, "parameters": options}
        add_model_routes(router, prefix, f":{task}", _task_route(endpoints, task, doc), "POST",
                         response_model=answer, responses=responses, openapi_extra=extra)  # fmt: skip

    async def model_metadata(name: str, version: str | None = None) -> Response:
        """model.json of the version (default: the one the policy serves), plus state and provider."""
        return _json(tasks.model_metadata(core.model_info(tasks.model_ref(name, version))))

    add_model_routes(router, prefix, "", model_metadata, "GET", response_model=ModelMetadata)

    @router.get("/v1/models", response_model=ModelIndex)
    async def list_models() -> Response:
        """Every model in the repository with its task, provider and per-version state."""
        return _json(tasks.model_index(core))

    return router
