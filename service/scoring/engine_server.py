"""The server engine: the same shards, decoded and checked here, scored by a running pixelserve over gRPC.

Images travel as uint8 tensors already at the model's size (decoded here with the core's own function), so
one bad file is one error row and the server does no decoding. The calls go through `pixelserve.client`, the
client users have: it retries queue-full and unavailable answers as the server asks, and `RemoteRunner` below
bounds the requests in flight and speaks the core's types, so the scorer cannot tell it from a local core.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, cast

from pixelserve import client as remote
from pixelserve.modelspec import Preprocessing

from ..core.types import (
    Applied,
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
    NotPermitted,
    Overloaded,
    PayloadTooLarge,
    ServiceError,
    Unauthenticated,
)
from ..settings import Settings
from .driver import Summary, finish, score_job
from .job import Job, Target
from .sources import Source

SHARDS_IN_FLIGHT = 2  # each shard sends its requests concurrently; the runner bounds the total
RETRY = remote.Retry(retries=8, backoff_s=0.05, max_backoff_s=5.0)
TIMEOUT_S = 300.0
# The client's errors as the core's, most specific first, so the scorer handles a remote refusal as a local one.
ERRORS: tuple[tuple[type[remote.PixelServeError], type[ServiceError]], ...] = (
    (remote.PayloadTooLarge, PayloadTooLarge),
    (remote.InvalidInput, InvalidInput),
    (remote.ModelNotFound, ModelNotFound),
    (remote.Unavailable, ModelNotReady),
    (remote.Overloaded, Overloaded),
    (remote.DeadlineExceeded, DeadlineExceeded),
    (remote.Unauthenticated, Unauthenticated),
    (remote.PermissionDenied, NotPermitted),
)


def _service_error(error: remote.PixelServeError) -> ServiceError:
    for client_error, service_error in ERRORS:
        if isinstance(error, client_error):
            return service_error(str(error), retry_after=error.retry_after)
    return ServiceError(str(error))


def _applied(result: remote.TaskResult) -> Applied | None:
    prepared = result.prepared
    return None if prepared is None else Applied(cast(Any, prepared.resize), cast(Any, prepared.normalize))


def _images(inputs: ImageInputs) -> remote.Images:
    """The scorer sends prepared uint8 tensors; encoded files would work too."""
    return list(inputs.encoded) if inputs.tensor is None else inputs.tensor


class RemoteRunner:
    """The scorer's task calls against a server's gRPC address (HOST:PORT or grpc[s]://HOST:PORT), at most
    `concurrency` requests in flight."""

    def __init__(
        self,
        address: str,
        *,
        api_key: str | None = None,
        concurrency: int = 4,
        retry: remote.Retry = RETRY,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        url = address if "://" in address else f"grpc://{address}"
        self.client = remote.AsyncClient(url, api_key=api_key, timeout=timeout_s, retry=retry)
        self._slots = asyncio.Semaphore(max(1, concurrency))

    @property
    def retried(self) -> int:
        """Requests the client sent again (for reports and tests)."""
        return self.client.retried

    async def close(self) -> None:
        await self.client.close()

    async def _call(self, call: Awaitable[remote.TaskResult]) -> remote.TaskResult:
        async with self._slots:
            try:
                return await call
            except remote.PixelServeError as exc:
                raise _service_error(exc) from exc

    async def describe(self, ref: ModelRef) -> Target:
        """The version the server serves for `ref`, with the preprocessing it declares."""
        try:
            info = await self.client.model(ref.name, ref.version)
        except remote.PixelServeError as exc:
            raise _service_error(exc) from exc
        pre = info.preprocessing
        # The model's own resize and normalize too: the scorer decodes with them, as the server would.
        preprocessing = Preprocessing.model_validate(
            {"color_mode": pre.color_mode, "height": pre.height, "width": pre.width,
             "resize": pre.resize or "stretch", "normalize": pre.normalize or "none"}
        )  # fmt: skip
        return Target(info.name, info.version, cast(TaskName, info.task), preprocessing)

    async def classify(
        self, ref: ModelRef, inputs: ImageInputs, *, top_k: int | None = None
    ) -> TaskResult[Classification]:
        call = self.client.classify(ref.name, _images(inputs), version=ref.version, top_k=top_k,
                                    tensors=inputs.tensor is not None, resize=inputs.resize,
                                    normalize=inputs.normalize)  # fmt: skip
        result = await self._call(call)
        items = [
            Classification(
                top=[LabelScore(s.index, s.label, s.probability) for s in item.top],
                ood_score=item.ood_score,
                ood_threshold=item.ood_threshold,
                is_ood=item.is_ood,
                anomaly_score=item.anomaly_score,
            )
            for item in result
        ]
        return TaskResult(ServedBy(result.model.name, result.model.version), items, _applied(result))

    async def _images(self, call: Awaitable[remote.TaskResult]) -> TaskResult[Reconstruction]:
        result = await self._call(call)
        items = [
            Reconstruction(
                image=item.image,
                error=item.error,
                threshold=item.threshold,
                is_anomaly=item.is_anomaly,
                anomaly_score=item.anomaly_score,
                anomaly_map=item.anomaly_map,
            )
            for item in result
        ]
        return TaskResult(ServedBy(result.model.name, result.model.version), items, _applied(result))

    async def denoise(self, ref: ModelRef, inputs: ImageInputs) -> TaskResult[Reconstruction]:
        call = self.client.denoise(ref.name, _images(inputs), version=ref.version, tensors=inputs.tensor is not None,
                                   resize=inputs.resize, normalize=inputs.normalize)  # fmt: skip
        return await self._images(call)

    async def reconstruct(self, ref: ModelRef, inputs: ImageInputs) -> TaskResult[Reconstruction]:
        call = self.client.reconstruct(ref.name, _images(inputs), version=ref.version,
                                       tensors=inputs.tensor is not None, resize=inputs.resize,
                                       normalize=inputs.normalize)  # fmt: skip
        return await self._images(call)

    async def encode(self, ref: ModelRef, inputs: ImageInputs) -> TaskResult[Encoding]:
        call = self.client.encode(ref.name, _images(inputs), version=ref.version, tensors=inputs.tensor is not None,
                                  resize=inputs.resize, normalize=inputs.normalize)  # fmt: skip
        result = await self._call(call)
        items = [Encoding(latent=item.latent) for item in result]
        return TaskResult(ServedBy(result.model.name, result.model.version), items, _applied(result))


async def _run(job: Job, source: Source) -> Summary:
    assert job.server is not None
    runner = RemoteRunner(job.server, api_key=job.api_key, concurrency=job.concurrency)
    try:
        target = await runner.describe(ModelRef(job.model, job.version))
        plan = await score_job(
            job,
            source,
            runner,
            target,
            # decoding happens here, under the service's default pixel limit
            max_pixels=Settings.model_fields["max_image_pixels"].default,
            request_size=job.request_size,
            in_flight=SHARDS_IN_FLIGHT,
        )
    finally:
        await runner.close()
    return finish(plan)


def run(job: Job, source: Source) -> Summary:
    return asyncio.run(_run(job, source))
