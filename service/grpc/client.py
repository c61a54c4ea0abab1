"""A pixelserve.v1 client that returns the core's plain types, so a batch job can call a running server exactly
as it calls an in-process core (`classify`, `denoise`, `reconstruct`, `encode`).

Requests in flight are bounded by a semaphore; RESOURCE_EXHAUSTED with a ``retry-after`` trailer (queue full)
and UNAVAILABLE (model not ready, server draining or restarting) are retried with exponential backoff and
jitter, honouring the trailer. RESOURCE_EXHAUSTED without one is grpc's own refusal of a message over a size
limit: sending it again cannot help, so it is a PayloadTooLarge at once. Other statuses become the matching
ServiceError.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import numpy as np

from pixelserve.modelspec import Preprocessing

from ..core.types import (
    Classification,
    Encoding,
    ImageInputs,
    LabelScore,
    ModelRef,
    Reconstruction,
    ServedBy,
    TaskName,
    TaskResult,
)
from ..errors import (
    DeadlineExceeded,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    Overloaded,
    PayloadTooLarge,
    ServiceError,
    Unauthenticated,
)
from .converters import array_from_tensor, tensor_from_array
from .gen.pixelserve.v1 import pixelserve_pb2 as pb
from .gen.pixelserve.v1 import pixelserve_pb2_grpc as pb_grpc

T = TypeVar("T")

RETRYABLE = frozenset({grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE})
# Client-side view of the error table: INVALID_ARGUMENT is a bad input (or an unsupported task; both are the
# caller's to fix).
ERRORS: dict[grpc.StatusCode, type[ServiceError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidInput,
    grpc.StatusCode.NOT_FOUND: ModelNotFound,
    grpc.StatusCode.UNAVAILABLE: ModelNotReady,
    grpc.StatusCode.RESOURCE_EXHAUSTED: Overloaded,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
}
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class RemoteModel:
    """What a client needs to prepare inputs for a served model version."""

    name: str
    version: int
    task: TaskName
    preprocessing: Preprocessing


def _error(exc: grpc.aio.AioRpcError) -> ServiceError:
    cls = ERRORS.get(exc.code(), ServiceError)
    if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and _retry_after(exc) is None:
        cls = PayloadTooLarge  # a message over grpc's size limit (the queue-full answer carries retry-after)
    return cls(f"{exc.code().name}: {exc.details()}")


def _retryable(exc: grpc.aio.AioRpcError) -> bool:
    if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return _retry_after(exc) is not None
    return exc.code() in RETRYABLE


def _retry_after(exc: grpc.aio.AioRpcError) -> float | None:
    for key, value in exc.trailing_metadata() or ():
        if key == "retry-after":
            try:
                return float(value)
            except ValueError:
                return None
    return None


def _served(message: pb.ServedBy) -> ServedBy:
    return ServedBy(message.name, message.version)


def _optional(message: Any, name: str) -> Any:
    return getattr(message, name) if message.HasField(name) else None


class TaskClient:
    def __init__(
        self,
        address: str,
        *,
        api_key: str | None = None,
        concurrency: int = 4,
        retries: int = 8,
        backoff_s: float = 0.05,
        max_backoff_s: float = 5.0,
        timeout_s: float = 300.0,
    ) -> None:
        self._channel = grpc.aio.insecure_channel(
            address,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        self._stub = pb_grpc.PixelServeStub(self._channel)
        self._metadata = (("x-api-key", api_key),) if api_key else ()
        self._slots = asyncio.Semaphore(max(1, concurrency))
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        self.retried = 0  # calls that had to be sent again (for reports and tests)

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: Callable[..., Awaitable[T]], request: Any) -> T:
        attempt = 0
        while True:
            async with self._slots:
                try:
                    return await method(request, metadata=self._metadata, timeout=self.timeout_s)
                except grpc.aio.AioRpcError as exc:
                    if not _retryable(exc) or attempt >= self.retries:
                        raise _error(exc) from exc
                    hinted = _retry_after(exc)
            delay = min(self.max_backoff_s, self.backoff_s * 2**attempt)
            delay = max(delay * random.uniform(0.5, 1.0), hinted or 0.0)
            attempt += 1
            self.retried += 1
            await asyncio.sleep(delay)

    async def describe(self, ref: ModelRef) -> RemoteModel:
        meta = await self._call(self._stub.GetModel, pb.GetModelRequest(model=ref.name, version=ref.version or 0))
        shape = meta.preprocessing
        pre = Preprocessing(color_mode=shape.color_mode, height=shape.height, width=shape.width)  # type: ignore[arg-type]
        return RemoteModel(meta.name, meta.version, meta.task, pre)  # type: ignore[arg-type]

    @staticmethod
    def _batch(inputs: ImageInputs) -> pb.ImageBatch:
        if inputs.tensor is not None:
            return pb.ImageBatch(batch=tensor_from_array(inputs.tensor))
        return pb.ImageBatch(images=[pb.Image(encoded=data) for data in inputs.encoded])

    async def classify(
        self, ref: ModelRef, inputs: ImageInputs, *, top_k: int | None = None
    ) -> TaskResult[Classification]:
        request = pb.ClassifyRequest(
            model=ref.name, version=ref.version or 0, inputs=self._batch(inputs), top_k=top_k or 0
        )
        response = await self._call(self._stub.Classify, request)
        items = [
            Classification(
                top=[LabelScore(s.index, s.label, s.probability) for s in result.top],
                ood_score=_optional(result, "ood_score"),
                ood_threshold=_optional(result, "ood_threshold"),
                is_ood=_optional(result, "is_ood"),
                anomaly_score=_optional(result, "anomaly_score"),
            )
            for result in response.results
        ]
        return TaskResult(_served(response.model), items)

    async def _images(self, method: Callable[..., Awaitable[Any]], request: Any) -> TaskResult[Reconstruction]:
        response = await self._call(method, request)
        items = [
            Reconstruction(
                image=array_from_tensor(r.tensor),
                error=r.error,
                threshold=_optional(r, "threshold"),
                is_anomaly=_optional(r, "is_anomaly"),
                anomaly_score=_optional(r, "anomaly_score"),
                anomaly_map=array_from_tensor(r.anomaly_map) if r.HasField("anomaly_map") else None,
            )
            for r in response.results
        ]
        return TaskResult(_served(response.model), items)

    async def denoise(self, ref: ModelRef, inputs: ImageInputs) -> TaskResult[Reconstruction]:
        batch = self._batch(inputs)
        request = pb.DenoiseRequest(model=ref.name, version=ref.version or 0, inputs=batch, return_tensor=True)
        return await self._images(self._stub.Denoise, request)

    async def reconstruct(self, ref: ModelRef, inputs: ImageInputs) -> TaskResult[Reconstruction]:
        batch = self._batch(inputs)
        request = pb.ReconstructRequest(model=ref.name, version=ref.version or 0, inputs=batch, return_tensor=True)
        return await self._images(self._stub.Reconstruct, request)

    async def encode(self, ref: ModelRef, inputs: ImageInputs) -> TaskResult[Encoding]:
        request = pb.EncodeRequest(model=ref.name, version=ref.version or 0, inputs=self._batch(inputs))
        response = await self._call(self._stub.Encode, request)
        items = [Encoding(latent=np.asarray(r.latent, dtype=np.float32)) for r in response.results]
        return TaskResult(_served(response.model), items)
