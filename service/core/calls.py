"""One request's record in the core, and the scope that reports it to the operations hooks.

An adapter opens the scope around everything it does for one request (`core.request(task, model,
protocol)`), so a request its wire decoding refuses is counted like one the core refuses; the core's task
method inside fills in the served version, where the time went and the answer. In-process callers (batch
scoring, verify) open none: the task method opens its own, with no protocol.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from pixelserve.modelspec import OUTPUT_LATENT, ModelSpec

from .. import context
from ..errors import UnsupportedTask
from . import images
from .types import ImageInputs, ModelRef, ServedBy, TaskName, TaskResult

if TYPE_CHECKING:
    from ..context import RequestContext
    from ..hooks import Hooks
    from ..repository import ServedVersion
    from .batching import Completed

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
class Run:
    """One batcher run of a request: `role` "" for the model itself, "ood." for its paired autoencoder."""

    role: str
    served: ServedVersion
    submitted: float
    done: Completed


@dataclass(slots=True)
class Call:
    """One core request: what was asked, the version that served it, where its time went (perf_counter
    seconds), what the task measured (`predicted`, `scores`: for drift) and the answer."""

    task: str  # a TaskName, or "infer" (raw inference)
    model: str
    protocol: str = ""  # "rest", "grpc"; "" for in-process callers
    context: RequestContext | None = None
    ref: ModelRef | None = None
    served: ServedVersion | None = None
    inputs: ImageInputs | None = None
    batch: np.ndarray | None = None
    started: float = field(default_factory=time.perf_counter)
    preparing: float = 0.0
    prepared: float = 0.0
    ran: float = 0.0
    queue_s: float = 0.0
    infer_s: float = 0.0
    runs: list[Run] = field(default_factory=list)
    predicted: np.ndarray | None = None
    scores: np.ndarray | None = None
    result: Any = None
    answered: float = 0.0

    def mark_ran(self, done: Completed) -> None:
        self.queue_s, self.infer_s, self.ran = done.queue_s, done.compute_s, time.perf_counter()

    def result_of(self, items: list[T]) -> TaskResult[T]:
        """The task's answer, with the preprocessing its encoded images got and, if asked, what the model saw."""
        served, inputs = self.served, self.inputs
        assert served is not None and inputs is not None
        applied = None if inputs.tensor is not None else images.applied(inputs, served.spec.preprocessing)
        echoed = self.batch if inputs.echo else None
        return TaskResult(ServedBy(served.name, served.version), items, applied, echoed)


_open: ContextVar[Call | None] = ContextVar("pixelserve_call", default=None)


class CallScope:
    """`with core.request(...) as call:` — hooks.started on entry, answered or failed on exit. A class, not
    a generator: this runs on every request."""

    __slots__ = ("_call", "_hooks", "_token")

    def __init__(self, hooks: Hooks, task: str, model: str, protocol: str) -> None:
        self._hooks = hooks
        self._call = Call(task, model, protocol, context.current.get())

    def __enter__(self) -> Call:
        self._token = _open.set(self._call)
        self._hooks.started(self._call)
        return self._call

    def __exit__(self, exc_type: object, error: BaseException | None, tb: object) -> None:
        _open.reset(self._token)
        call = self._call
        call.answered = time.perf_counter()
        if error is None:
            self._hooks.answered(call, call.result)
        else:
            self._hooks.failed(call, error)


def open_call(task: str) -> Call | None:
    """The call an adapter opened for this request, if it is for `task` and not yet used; else None."""
    call = _open.get()
    if call is None or call.task != task or call.ref is not None:
        return None
    return call
