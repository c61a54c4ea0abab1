"""One request's record in the core (the served version it holds, where its time went) and the small rules the
task methods share: which task a model supports, and scores as every transport carries them."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from pixelserve.modelspec import OUTPUT_LATENT, ModelSpec

from ..errors import UnsupportedTask
from ..repository import ServedVersion
from . import images
from .batching import Completed
from .types import ImageInputs, ServedBy, TaskName, TaskResult

T = TypeVar("T")


def check_task(spec: ModelSpec, task: TaskName | None) -> None:
    """`task` None is raw inference, which every model supports."""
    if task is None or (task == "encode" and spec.has_output(OUTPUT_LATENT)) or spec.task == task:
        return
    if task == "encode":
        raise UnsupportedTask(f"model {spec.name!r} has no {OUTPUT_LATENT!r} output, so it cannot encode")
    raise UnsupportedTask(
        f"model {spec.name!r} is a {spec.task} model and cannot {task}; use {spec.task} or raw inference"
    )


def float32(value: object) -> float:
    """Scores as every transport carries them (protobuf floats), so REST, gRPC and batch scoring agree exactly."""
    return float(np.float32(value))


@dataclass(slots=True)
class Call:
    """One request on one served version, and where its time went (for the version's statistics)."""

    served: ServedVersion
    inputs: ImageInputs
    started: float = field(default_factory=time.perf_counter)
    prepared: float = 0.0
    queue_s: float = 0.0
    infer_s: float = 0.0
    ran: float = 0.0

    def mark_prepared(self) -> None:
        self.prepared = time.perf_counter()

    def mark_ran(self, done: Completed) -> None:
        self.queue_s, self.infer_s, self.ran = done.queue_s, done.compute_s, time.perf_counter()

    batch: np.ndarray | None = None

    def result(self, items: list[T]) -> TaskResult[T]:
        """The task's answer, with the preprocessing its encoded images got and, if asked, what the model saw."""
        applied = (
            None if self.inputs.tensor is not None else images.applied(self.inputs, self.served.spec.preprocessing)
        )
        echoed = self.batch if self.inputs.echo else None
        return TaskResult(ServedBy(self.served.name, self.served.version), items, applied, echoed)
