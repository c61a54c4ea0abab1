"""The task API over REST without I/O: each call as the request to send and the function that reads its
answer, so the sync and async transports share every byte of it.

One image goes as the raw body (the server's fast path), several as multipart files; options go in the query
string; ``Accept: application/json`` keeps `:denoise` from answering one image as a bare PNG.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import numpy as np

from .inputs import Batch
from .results import (
    AnomalyThreshold,
    Classification,
    Encoding,
    ImageResult,
    Label,
    ModelEntry,
    ModelInfo,
    Prepared,
    Preprocessing,
    Quality,
    ServedBy,
    TaskResult,
    TensorInfo,
    VersionState,
    png_pixels,
)

T = TypeVar("T")
JSON = "application/json"
RAW = "application/octet-stream"


@dataclass(frozen=True)
class RestCall(Generic[T]):
    """One request; `parse` reads an answer whose status is in `answers` (any other status is an error)."""

    method: str
    path: str
    parse: Callable[[int, bytes, Mapping[str, str]], T]  # status, body, headers
    params: dict[str, str] = field(default_factory=dict)
    content: bytes | None = None
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None
    headers: dict[str, str] = field(default_factory=lambda: {"Accept": JSON})
    answers: frozenset[int] = frozenset({200})


def model_path(name: str, version: int | None) -> str:
    path = f"/v1/models/{quote(name, safe='')}"
    return f"{path}/versions/{int(version)}" if version else path


def _options(top_k: int | None, resize: str | None, normalize: str | None, return_input: bool) -> dict[str, str]:
    params = {"resize": resize, "normalize": normalize, "top_k": None if top_k is None else str(top_k)}
    if return_input:
        params["return_input"] = "true"
    return {key: value for key, value in params.items() if value is not None}


def task_call(
    task: str,
    parse: Callable[[int, bytes, Mapping[str, str]], T],
    model: str,
    version: int | None,
    batch: Batch,
    *,
    top_k: int | None = None,
    resize: str | None = None,
    normalize: str | None = None,
    return_input: bool = False,
) -> RestCall[T]:
    if batch.encoded is None:
        raise ValueError("tensors=True needs gRPC: the REST task API takes encoded images (PNG, JPEG, ...)")
    params = _options(top_k, resize, normalize, return_input)
    path = f"{model_path(model, version)}:{task}"
    if len(batch.encoded) == 1:
        headers = {"Accept": JSON, "Content-Type": RAW}
        return RestCall("POST", path, parse, params, content=batch.encoded[0], headers=headers)
    files = [("files", (f"image{i}", data, RAW)) for i, data in enumerate(batch.encoded)]
    return RestCall("POST", path, parse, params, files=files)


def _json(body: bytes) -> Any:
    return json.loads(body)


def _served(body: Mapping[str, Any]) -> ServedBy:
    return ServedBy(str(body["model"]["name"]), int(body["model"]["version"]))


def _prepared(body: Mapping[str, Any]) -> Prepared | None:
    prepared = body.get("prepared")
    if not prepared:
        return None
    inputs = [base64.b64decode(text) for text in prepared.get("inputs") or []]
    return Prepared(prepared["resize"], prepared["normalize"], inputs)


def classifications(_status: int, raw: bytes, _headers: Mapping[str, str]) -> TaskResult[Classification]:
    body = _json(raw)
    items = [
        Classification(
            top=[Label(int(s["index"]), str(s["label"]), float(s["probability"])) for s in r["top"]],
            ood_score=r.get("ood_score"),
            ood_threshold=r.get("ood_threshold"),
            is_ood=r.get("is_ood"),
            anomaly_score=r.get("anomaly_score"),
        )
        for r in body["results"]
    ]
    return TaskResult(_served(body), items, _prepared(body))


def images(_status: int, raw: bytes, _headers: Mapping[str, str]) -> TaskResult[ImageResult]:
    body = _json(raw)
    items = []
    for r in body["results"]:
        png = base64.b64decode(r["image"])
        anomaly_map = r.get("anomaly_map")
        items.append(
            ImageResult(
                image=png_pixels(png).astype(np.float32) / 255.0,
                png=png,
                error=float(r["error"]),
                threshold=r.get("threshold"),
                is_anomaly=r.get("is_anomaly"),
                anomaly_score=r.get("anomaly_score"),
                anomaly_map=None if anomaly_map is None else np.asarray(anomaly_map, dtype=np.float32),
            )
        )
    return TaskResult(_served(body), items, _prepared(body))


def encodings(_status: int, raw: bytes, _headers: Mapping[str, str]) -> TaskResult[Encoding]:
    body = _json(raw)
    items = [Encoding(np.asarray(r["latent"], dtype=np.float32)) for r in body["results"]]
    return TaskResult(_served(body), items, _prepared(body))


def _model_index(_status: int, raw: bytes, _headers: Mapping[str, str]) -> list[ModelEntry]:
    return [
        ModelEntry(
            name=m["name"],
            state=m["state"],
            versions=[VersionState(int(v["version"]), v["state"], v.get("reason", "")) for v in m["versions"]],
            task=m.get("task"),
            provider=m.get("provider"),
        )
        for m in _json(raw)["models"]
    ]


def _model_info(_status: int, raw: bytes, _headers: Mapping[str, str]) -> ModelInfo:
    body = _json(raw)
    spec: dict[str, Any] = body["spec"]
    pre = spec["preprocessing"]
    quality, anomaly = spec.get("quality"), spec.get("anomaly")
    return ModelInfo(
        name=body["name"],
        version=int(body["version"]),
        versions=[int(v) for v in body["versions"]],
        task=body["task"],
        state=body["state"],
        provider=body["provider"],
        description=spec.get("description", ""),
        labels=list(spec.get("labels") or []),
        inputs=[TensorInfo(t["name"], t["dtype"], list(t["shape"])) for t in spec["inputs"]],
        outputs=[TensorInfo(t["name"], t["dtype"], list(t["shape"])) for t in spec["outputs"]],
        preprocessing=Preprocessing(pre["color_mode"], pre["height"], pre["width"], pre["resize"], pre["normalize"]),
        quality=None
        if quality is None
        else Quality(quality["dataset"], quality["split"], quality["samples"], dict(quality["metrics"])),
        anomaly=None
        if anomaly is None
        else AnomalyThreshold(
            anomaly["metric"], anomaly["percentile"], anomaly["value"], anomaly["false_positive_rate"]
        ),
        ood_model=(spec.get("pairing") or {}).get("ood_model"),
        parameters=spec.get("parameters"),
        created_at=spec.get("created_at"),
        spec=spec,
    )


def models_call() -> RestCall[list[ModelEntry]]:
    return RestCall("GET", "/v1/models", _model_index)


def model_call(name: str, version: int | None) -> RestCall[ModelInfo]:
    return RestCall("GET", model_path(name, version), _model_info)


def _ok(status: int, _raw: bytes, _headers: Mapping[str, str]) -> bool:
    return status == 200


def live_call() -> RestCall[bool]:
    return RestCall("GET", "/v2/health/live", _ok, answers=frozenset({200, 503}))


def ready_call(model: str | None, version: int | None) -> RestCall[bool]:
    """Server readiness, or one model's (503 is "not ready", an unknown model stays a ModelNotFound)."""
    if model is None:
        return RestCall("GET", "/v2/health/ready", _ok, answers=frozenset({200, 503}))
    path = f"/v2/models/{quote(model, safe='')}" + (f"/versions/{int(version)}" if version else "") + "/ready"
    return RestCall("GET", path, _ok, answers=frozenset({200, 503}))
