"""The task API: ``POST /v1/models/{name}[/versions/{version}]:{classify|denoise|reconstruct|encode}``,
``GET /v1/models`` and ``GET /v1/models/{name}[/versions/{version}]``.

Each handler only translates: body -> `ImageInputs`, path -> `ModelRef`, core result -> JSON (or PNG).
"""

from __future__ import annotations

import base64
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from ..core.images import encode_png
from ..core.offload import Offloader
from ..core.types import (
    DEFAULT_TOP_K,
    Classification,
    Core,
    ModelRef,
    Reconstruction,
    ServedBy,
    TaskResult,
)
from ..errors import ServiceError
from ..observe.metrics import Metrics
from ..settings import Settings
from .routing import add_model_routes
from .schemas import (
    ClassificationOut,
    ClassifyResponse,
    EncodeResponse,
    EncodingOut,
    ErrorBody,
    ImageOut,
    ImageResponse,
    LabelScoreOut,
    ModelIndex,
    ModelIndexEntry,
    ModelMetadata,
    ServedModel,
    VersionStatus,
)
from .uploads import Options, Upload, read_upload, task_inputs

PNG = "image/png"

UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "one image as the raw body, several as multipart/form-data files, or base64 in JSON",
        "content": {
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "top_k": {"type": "integer"},
                    },
                }
            },
            "application/json": {"schema": {"$ref": "#/components/schemas/ImagesRequest"}},
        },
    }
}
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 404, 413, 429, 500, 503, 504)
}

TopK = Annotated[int | None, Query(ge=1, description=f"labels per image (default {DEFAULT_TOP_K})")]
Resize = Annotated[str | None, Query(description="stretch, center-crop or letterbox (default: the model's)")]
Normalize = Annotated[str | None, Query(description="none or digit (default: the model's)")]
ReturnInput = Annotated[bool | None, Query(description="also answer with each prepared input image as PNG")]


def prepared_json(result: TaskResult) -> dict[str, Any] | None:
    """The preprocessing a request's encoded images got (None for tensors), with the inputs as base64 PNG when
    the request asked; the same for the FastAPI routes and the fast path."""
    if result.applied is None:
        return None
    inputs = [] if result.inputs is None else [base64.b64encode(encode_png(x)).decode("ascii") for x in result.inputs]
    return {"resize": result.applied.resize, "normalize": result.applied.normalize, "inputs": inputs}


def _served(model: ServedBy) -> ServedModel:
    return ServedModel(name=model.name, version=model.version)


def _classifications(result: TaskResult[Classification]) -> ClassifyResponse:
    return ClassifyResponse(
        model=_served(result.model),
        results=[
            ClassificationOut(
                top=[LabelScoreOut(index=s.index, label=s.label, probability=s.probability) for s in item.top],
                ood_score=item.ood_score,
                ood_threshold=item.ood_threshold,
                is_ood=item.is_ood,
                anomaly_score=item.anomaly_score,
            )
            for item in result.items
        ],
        prepared=prepared_json(result),
    )


def _images(result: TaskResult[Reconstruction]) -> ImageResponse:
    return ImageResponse(
        model=_served(result.model),
        results=[
            ImageOut(
                image=base64.b64encode(encode_png(item.image)).decode("ascii"),
                error=item.error,
                threshold=item.threshold,
                is_anomaly=item.is_anomaly,
                anomaly_score=item.anomaly_score,
                anomaly_map=None if item.anomaly_map is None else np.round(item.anomaly_map, 6).tolist(),
            )
            for item in result.items
        ],
        prepared=prepared_json(result),
    )


def _image_bytes(result: TaskResult[Reconstruction]) -> int:
    return sum(item.image.nbytes for item in result.items)


def wants_png(request: Request, upload: Upload) -> bool:
    """`:denoise` answers a bare PNG for one image when the client asks for image/png, or sent a raw image
    body without asking for JSON; otherwise JSON with base64 PNGs."""
    if len(upload.images) != 1:
        return False
    accept = request.headers.get("accept", "").lower()
    if PNG in accept:
        return True
    return upload.raw and "application/json" not in accept


def _png_response(result: TaskResult[Reconstruction], png: bytes) -> Response:
    item = result.items[0]
    headers = {
        "X-Model-Name": result.model.name,
        "X-Model-Version": str(result.model.version),
        "X-Reconstruction-Error": repr(item.error),
    }
    if result.applied is not None:
        headers["X-Prepared"] = f"resize={result.applied.resize}; normalize={result.applied.normalize}"
    return Response(content=png, media_type=PNG, headers=headers)


def _index(core: Core) -> ModelIndex:
    by_name: dict[str, list[VersionStatus]] = {}
    for status in core.index():
        entry = VersionStatus(version=status.version, state=status.state, reason=status.reason)
        by_name.setdefault(status.name, []).append(entry)
    models = []
    for name, versions in sorted(by_name.items()):
        versions.sort(key=lambda v: v.version)
        task = provider = None
        try:
            info = core.model_info(ModelRef(name))
            task, provider = info.spec.task, info.provider
        except ServiceError:  # no servable version: the index still lists its states and reasons
            pass
        models.append(
            ModelIndexEntry(name=name, task=task, provider=provider, state=versions[-1].state, versions=versions)
        )
    return ModelIndex(models=models)


def _metadata(core: Core, ref: ModelRef) -> ModelMetadata:
    info = core.model_info(ref)
    spec = info.spec
    return ModelMetadata(
        name=spec.name,
        version=spec.version,
        versions=info.versions,
        state=info.state,
        provider=info.provider,
        task=spec.task,
        quality=spec.quality.model_dump(mode="json") if spec.quality else None,
        spec=spec.model_dump(mode="json"),
    )


def create_task_router(core: Core, settings: Settings, metrics: Metrics, offload: Offloader) -> APIRouter:
    router = APIRouter(tags=["tasks"], responses=ERRORS)

    async def classify(
        request: Request,
        name: str,
        version: int | None = None,
        top_k: TopK = None,
        resize: Resize = None,
        normalize: Normalize = None,
        return_input: ReturnInput = None,
    ) -> ClassifyResponse:
        """Top-k labels per image, plus an out-of-distribution score when the model is paired with an
        autoencoder."""
        options = Options(top_k, resize, normalize, return_input)
        with core.request("classify", name, "rest"):
            upload = await read_upload(request, settings, offload)
            inputs = task_inputs(upload, options)
            result = await core.classify(ModelRef(name, version), inputs, top_k=top_k or upload.top_k)
        return _classifications(result)

    async def reconstruct(
        request: Request,
        name: str,
        version: int | None = None,
        resize: Resize = None,
        normalize: Normalize = None,
        return_input: ReturnInput = None,
    ) -> ImageResponse:
        """Reconstruction (base64 PNG), its error and the anomaly verdict per image."""
        with core.request("reconstruct", name, "rest"):
            upload = await read_upload(request, settings, offload)
            inputs = task_inputs(upload, Options(None, resize, normalize, return_input))
            result = await core.reconstruct(ModelRef(name, version), inputs)
        return await offload.sized(_image_bytes(result), _images, result)

    async def denoise(
        request: Request,
        name: str,
        version: int | None = None,
        resize: Resize = None,
        normalize: Normalize = None,
        return_input: ReturnInput = None,
    ) -> Response:
        """The cleaned image: a bare image/png for one raw-body image (or `Accept: image/png`), else JSON."""
        with core.request("denoise", name, "rest"):
            upload = await read_upload(request, settings, offload)
            inputs = task_inputs(upload, Options(None, resize, normalize, return_input))
            result = await core.denoise(ModelRef(name, version), inputs)
        if wants_png(request, upload):
            return _png_response(result, await offload.sized(_image_bytes(result), encode_png, result.items[0].image))
        body = await offload.sized(_image_bytes(result), _images, result)
        return Response(content=body.model_dump_json(), media_type="application/json")

    async def model_metadata(name: str, version: int | None = None) -> ModelMetadata:
        """model.json of the version (default: the one the policy serves), plus state and provider."""
        return _metadata(core, ModelRef(name, version))

    async def encode(
        request: Request,
        name: str,
        version: int | None = None,
        resize: Resize = None,
        normalize: Normalize = None,
        return_input: ReturnInput = None,
    ) -> EncodeResponse:
        """The latent vector per image (autoencoders with a latent output)."""
        with core.request("encode", name, "rest"):
            upload = await read_upload(request, settings, offload)
            inputs = task_inputs(upload, Options(None, resize, normalize, return_input))
            result = await core.encode(ModelRef(name, version), inputs)
        return EncodeResponse(
            model=_served(result.model),
            results=[EncodingOut(latent=item.latent.tolist()) for item in result.items],
            prepared=prepared_json(result),
        )

    denoise_responses: dict[int | str, dict[str, Any]] = {
        200: {
            "content": {PNG: {}, "application/json": {"schema": {"$ref": "#/components/schemas/ImageResponse"}}},
            "description": "a PNG (one raw image) or JSON with base64 PNGs",
        }
    }
    prefix = "/v1/models/{name}"
    for task, endpoint in (("classify", classify), ("reconstruct", reconstruct), ("encode", encode)):
        add_model_routes(router, prefix, f":{task}", endpoint, "POST", openapi_extra=UPLOAD_BODY)
    add_model_routes(
        router, prefix, ":denoise", denoise, "POST", openapi_extra=UPLOAD_BODY, responses=denoise_responses
    )
    add_model_routes(router, prefix, "", model_metadata, "GET")

    @router.get("/v1/models")
    async def list_models() -> ModelIndex:
        """Every model in the repository with its task, provider and per-version state."""
        return _index(core)

    return router
