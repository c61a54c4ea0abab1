"""A record -> its log rows: the columns `pixelserve score` writes for the task (built by the same row builder),
then the image as received and where the request came from.

Log columns after the scoring ones: `output_image` (denoise only: the denoised PNG, the answer itself; its
`output_path` stays null), then `request_id`, `time` (UTC ISO), `trace_id`, `protocol`, `task`, `resize` and
`normalize` (the preprocessing the encoded images got; null for a tensor, which is taken as prepared) and
`image` (the encoded file as received, or a PNG of the tensor's image).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np

from ...core import images
from ...core.types import CALL_TASKS, InferResult, Reconstruction
from ...scoring import sinks
from ...scoring.rows import INFER_COLUMNS, Row, error_row, infer_rows, result_rows
from .record import Inputs, LoggedTask, PayloadRecord, new_id, utc_iso

LOG_COLUMNS = ("request_id", "time", "trace_id", "protocol", "task", "resize", "normalize", "image")
BINARY_COLUMNS = ("image", "output_image")  # bytes in Parquet, base64 text in JSON lines
TASKS = CALL_TASKS


def columns(task: LoggedTask) -> tuple[str, ...]:
    scoring = sinks.COMMON_COLUMNS + INFER_COLUMNS if task == "infer" else sinks.columns(task)
    return scoring + (("output_image",) if task == "denoise" else ()) + LOG_COLUMNS


@cache
def arrow_schema(task: LoggedTask) -> Any:
    """The scoring columns typed as `pixelserve score` types them (string ids), the log's own after them."""
    import pyarrow as pa

    types = {field.name: field.type for t in TASKS[:-1] for field in sinks._arrow_schema(t, "str")}
    types.update({name: pa.string() for name in ("outputs", *LOG_COLUMNS)})
    types.update({name: pa.binary() for name in BINARY_COLUMNS})
    return pa.schema([(name, types[name]) for name in columns(task)])


def input_images(inputs: Inputs) -> list[bytes]:
    """Encoded files as they came; a tensor's images as PNG (float32 0..255 rounded, as the core takes it)."""
    if not isinstance(inputs, np.ndarray):
        return [bytes(data) for data in inputs]
    tensor = inputs
    if tensor.dtype != np.uint8:
        tensor = np.rint(np.clip(np.nan_to_num(tensor.astype(np.float64)), 0, 255)).astype(np.uint8)
    if tensor.ndim == 3:
        tensor = tensor[..., np.newaxis]
    return [images.encode_png(image) for image in tensor]


def record_rows(record: PayloadRecord) -> list[Row]:
    """One row per input image, every column of the task present (null where it does not apply)."""
    encoded = input_images(record.inputs)
    log_id = new_id()
    ids = [f"{log_id}-{i}" for i in range(len(encoded))]
    paths = [None] * len(encoded)
    result = record.result
    if result is None:
        reason = record.error or "failed"
        rows = [error_row(id, None, record.model, record.version, reason) for id in ids]
    elif isinstance(result, InferResult):
        rows = infer_rows(result, ids, paths)
    else:
        rows = result_rows(result, record.task, ids, paths)  # type: ignore[arg-type]
        if record.task == "denoise":
            for row, item in zip(rows, result.items, strict=True):
                if isinstance(item, Reconstruction):
                    row["output_image"] = images.encode_png(item.image)
    applied = result.applied if result is not None else None
    common = {
        "request_id": record.request_id or log_id,
        "time": utc_iso(record.time),
        "trace_id": record.trace_id,
        "protocol": record.protocol,
        "task": record.task,
        "resize": applied.resize if applied else None,
        "normalize": applied.normalize if applied else None,
    }
    names = columns(record.task)
    out = []
    for row, image in zip(rows, encoded, strict=True):
        row.update(common, image=image)
        out.append({name: row.get(name) for name in names})
    return out
