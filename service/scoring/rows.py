"""Core results -> output rows: the one row builder of batch scoring and the payload log, so both write the
same columns for a task.

A row is id, path, model, version, status ("ok"/"error") and error, then the task's columns: classify
`label`, `probability`, `top_labels`, `top_indices`, `top_probabilities`, `ood_score`, `is_ood`,
`anomaly_score`; reconstruct `reconstruction_error`, `anomaly_threshold`, `is_anomaly`, `anomaly_score`;
denoise `reconstruction_error`, `output_path`; encode `latent`. Raw V2 inference has no task, so its rows
summarise the output tensors: a classifier's probabilities give the classification columns.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pixelserve.modelspec import OUTPUT_ERROR, OUTPUT_LATENT, OUTPUT_PROBABILITIES

from ..core.types import (
    DEFAULT_TOP_K,
    Classification,
    Encoding,
    InferResult,
    Reconstruction,
    TaskName,
    TaskResult,
)

Row = dict[str, Any]
# Where a denoised image was saved, given its index in the result (batch scoring writes PNGs beside its output).
SaveImage = Callable[[int, Reconstruction], str]

CLASSIFY_COLUMNS = ("label", "probability", "top_labels", "top_indices", "top_probabilities", "ood_score", "is_ood",
                    "anomaly_score")  # fmt: skip
# Raw inference rows: the classification columns when the graph outputs probabilities, the error and latent when
# it outputs them, and `outputs`, a JSON summary (shape, dtype, min, max, mean) of each output tensor per image.
INFER_COLUMNS = (*CLASSIFY_COLUMNS, "reconstruction_error", "latent", "outputs")


def base_row(id: int | str, path: str | None, model: str, version: int | None, status: str, error: str | None) -> Row:
    return {"id": id, "path": path, "model": model, "version": version, "status": status, "error": error}


def error_row(id: int | str, path: str | None, model: str, version: int | None, reason: str) -> Row:
    return base_row(id, path, model, version, "error", reason)


def classification_columns(item: Classification) -> Row:
    return {
        "label": item.top[0].label,
        "probability": item.top[0].probability,
        "top_labels": [s.label for s in item.top],
        "top_indices": [s.index for s in item.top],
        "top_probabilities": [s.probability for s in item.top],
        "ood_score": item.ood_score,
        "is_ood": item.is_ood,
        "anomaly_score": item.anomaly_score,
    }


def task_columns(task: TaskName, item: Any, index: int = 0, save: SaveImage | None = None) -> Row:
    """One item's columns; a denoised image's `output_path` is what `save` returns (None without it)."""
    if isinstance(item, Classification):
        return classification_columns(item)
    if isinstance(item, Reconstruction):
        if task == "reconstruct":
            return {
                "reconstruction_error": item.error,
                "anomaly_threshold": item.threshold,
                "is_anomaly": item.is_anomaly,
                "anomaly_score": item.anomaly_score,
            }
        return {"reconstruction_error": item.error, "output_path": save(index, item) if save else None}
    if isinstance(item, Encoding):
        return {"latent": [float(v) for v in np.asarray(item.latent).ravel()]}
    raise TypeError(f"no row columns for {type(item).__name__}")


def result_rows(
    result: TaskResult[Any],
    task: TaskName,
    ids: Sequence[int | str],
    paths: Sequence[str | None],
    *,
    save: SaveImage | None = None,
) -> list[Row]:
    """One "ok" row per item of a task's result, in order; ids and paths name the inputs."""
    rows = []
    for i, (id, path, item) in enumerate(zip(ids, paths, result.items, strict=True)):
        row = base_row(id, path, result.model.name, result.model.version, "ok", None)
        row.update(task_columns(task, item, i, save))
        rows.append(row)
    return rows


def _summary(values: np.ndarray) -> dict[str, Any]:
    flat = values.astype(np.float64, copy=False).ravel()
    finite = flat.size > 0 and bool(np.isfinite(flat).all())
    return {
        "shape": list(values.shape),
        "dtype": str(values.dtype),
        "min": float(flat.min()) if finite else None,
        "max": float(flat.max()) if finite else None,
        "mean": float(flat.mean()) if finite else None,
    }


def infer_rows(
    result: InferResult, ids: Sequence[int | str], paths: Sequence[str | None], *, top_k: int = DEFAULT_TOP_K
) -> list[Row]:
    """One "ok" row per image of a raw inference: its output tensors summarised, a classifier's probabilities
    as the classification columns (top_k labels, as the classify task would answer)."""
    outputs = {name: np.asarray(values) for name, values in result.outputs.items()}
    probabilities = outputs.get(OUTPUT_PROBABILITIES)
    labels = result.labels or []
    rows = []
    for i, (id, path) in enumerate(zip(ids, paths, strict=True)):
        row = base_row(id, path, result.model.name, result.model.version, "ok", None)
        if probabilities is not None and probabilities.ndim == 2 and len(labels) == probabilities.shape[1]:
            scores = probabilities[i]
            top = np.argsort(-scores, kind="stable")[: min(top_k, len(labels))]
            row.update(
                label=labels[top[0]],
                probability=float(scores[top[0]]),
                top_labels=[labels[j] for j in top],
                top_indices=[int(j) for j in top],
                top_probabilities=[float(scores[j]) for j in top],
            )
        if OUTPUT_ERROR in outputs:
            row["reconstruction_error"] = float(np.asarray(outputs[OUTPUT_ERROR][i]).ravel()[0])
        if OUTPUT_LATENT in outputs:
            row["latent"] = [float(v) for v in np.asarray(outputs[OUTPUT_LATENT][i]).ravel()]
        row["outputs"] = json.dumps({name: _summary(values[i]) for name, values in outputs.items()})
        rows.append(row)
    return rows
