"""Pydantic models of the task API (``/v1``) for its OpenAPI schema and the JSON upload body. The answers
themselves are the task API's (protocol/tasks.py), written as JSON by the endpoints; a test checks that they
validate against these models, so the documented schema is the one served."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImagesRequest(_Wire):
    """JSON input: base64 images (a ``data:image/png;base64,`` prefix is allowed)."""

    images: list[str] = Field(description="base64-encoded PNG/JPEG/BMP/GIF files, one result each, in order")
    # checked by the task API's one rule (protocol/tasks.py), as the query string's and gRPC's are
    top_k: int | None = Field(default=None, description="classify: labels per image", json_schema_extra={"minimum": 1})
    resize: str | None = Field(default=None, description="stretch, center-crop or letterbox (default: the model's)")
    normalize: str | None = Field(default=None, description="none or digit (default: the model's)")
    return_input: bool = Field(default=False, description="also answer with each prepared input image as PNG")


class ErrorDetail(_Wire):
    code: str = Field(description="gRPC-style status name, e.g. INVALID_ARGUMENT, RESOURCE_EXHAUSTED")
    message: str


class ErrorBody(_Wire):
    error: ErrorDetail


class ServedModel(_Wire):
    name: str
    version: int


class LabelScoreOut(_Wire):
    index: int
    label: str
    probability: float


class ClassificationOut(_Wire):
    top: list[LabelScoreOut]
    ood_score: float | None = Field(None, description="reconstruction MSE from the paired autoencoder")
    ood_threshold: float | None = None
    is_ood: bool | None = None
    anomaly_score: float | None = Field(None, description="ood_score normalised to 0..1, 0.5 at the threshold")


class ImageOut(_Wire):
    image: str = Field(description="the output image (denoised or reconstructed) as base64 PNG")
    error: float = Field(description="per-image MSE between input and output, in 0..1 units")
    threshold: float | None = Field(None, description="the calibrated anomaly threshold (reconstruct)")
    is_anomaly: bool | None = None
    anomaly_score: float | None = Field(None, description="error normalised to 0..1, 0.5 at the threshold")
    anomaly_map: list[list[float]] | None = Field(
        None, description="per-pixel squared error (mean over channels), when the model outputs one"
    )


class EncodingOut(_Wire):
    latent: list[float]


class PreparedOut(_Wire):
    """The preprocessing the request's encoded images got (absent for tensors) and, if asked, the results."""

    resize: str
    normalize: str
    inputs: list[str] = Field(default_factory=list, description="each prepared input as base64 PNG, if asked")


class ClassifyResponse(_Wire):
    model: ServedModel
    results: list[ClassificationOut]
    prepared: PreparedOut | None = None


class ImageResponse(_Wire):
    model: ServedModel
    results: list[ImageOut]
    prepared: PreparedOut | None = None


class EncodeResponse(_Wire):
    model: ServedModel
    results: list[EncodingOut]
    prepared: PreparedOut | None = None


class VersionStatus(_Wire):
    version: int
    state: str
    reason: str = ""


class ModelIndexEntry(_Wire):
    name: str
    task: str | None = Field(None, description="None when no version of the model could be read")
    provider: str | None = None
    state: str = Field(description="state of the newest version")
    versions: list[VersionStatus]


class ModelIndex(_Wire):
    models: list[ModelIndexEntry]


class ModelMetadata(_Wire):
    """Runtime facts plus the whole model.json (labels, preprocessing, quality, anomaly threshold, ...)."""

    name: str
    version: int
    versions: list[int]
    state: str
    provider: str = Field(description="the onnxruntime execution provider serving it")
    task: str
    quality: dict[str, Any] | None = Field(None, description="metrics measured on the real test split")
    spec: dict[str, Any] = Field(description="model.json as written by training")
