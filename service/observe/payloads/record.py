"""One sampled request as the request path hands it over: references to its inputs and its result, nothing
encoded or copied, so building one costs microseconds. Headers, API keys and client addresses have no place
in it, so they can never reach a log."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from time import time as epoch_seconds
from typing import Any

import numpy as np

from ...core.types import CallTask, ImageInputs, InferResult, ModelRef, TaskResult

LoggedTask = CallTask  # infer: raw V2 inference
Inputs = Sequence[bytes] | np.ndarray  # encoded files as received, or a uint8 (or float32 0..255) NHWC/NHW tensor


def utc_iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="milliseconds")


def new_id() -> str:
    return uuid.uuid4().hex


def _inputs(inputs: ImageInputs | Inputs) -> Inputs:
    if isinstance(inputs, ImageInputs):
        return inputs.tensor if inputs.tensor is not None else inputs.encoded
    return inputs


@dataclass(slots=True)
class PayloadRecord:
    """A request's inputs and its answer (`result`), or the `error` it failed with; not to be changed once offered.

    `request_id` is the client's id, or "" for a fresh uuid; `trace_id` the W3C trace id or "". `time` is when
    the request was answered (epoch seconds). Ids and the time's text are made in the writer thread, not here:
    each image's row `id` is `<uuid>-<index>`, unique even when clients reuse request ids.
    """

    protocol: str  # the adapter it came through, e.g. "rest", "grpc", "rest-v2", "grpc-v2"
    task: LoggedTask
    model: str
    version: int | None
    inputs: Inputs
    result: TaskResult[Any] | InferResult | None = None
    error: str | None = None
    request_id: str = ""
    trace_id: str = ""
    time: float = field(default_factory=epoch_seconds)

    @classmethod
    def answered(
        cls,
        protocol: str,
        task: LoggedTask,
        inputs: ImageInputs | Inputs,
        result: TaskResult[Any] | InferResult,
        *,
        request_id: str = "",
        trace_id: str = "",
    ) -> PayloadRecord:
        """A request the core answered; model and version are the ones that served it."""
        return cls(protocol, task, result.model.name, result.model.version, _inputs(inputs), result, None,
                   request_id, trace_id)  # fmt: skip

    @classmethod
    def failed(
        cls,
        protocol: str,
        task: LoggedTask,
        inputs: ImageInputs | Inputs,
        ref: ModelRef,
        error: str,
        *,
        request_id: str = "",
        trace_id: str = "",
    ) -> PayloadRecord:
        """A request the core refused (one error row per image, as batch scoring writes them)."""
        return cls(protocol, task, ref.name, ref.version, _inputs(inputs), None, error, request_id, trace_id)

    @property
    def images(self) -> int:
        """Rows this record becomes: one per input image."""
        return int(self.inputs.shape[0]) if isinstance(self.inputs, np.ndarray) else len(self.inputs)
