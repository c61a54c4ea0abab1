"""pixelserve.v1.PixelServe: our task API, a thin translation onto the Core.

What a request means and what an answer holds are the task API's (protocol/tasks.py), as for REST; this module
reads the messages into it and writes its answers back (converters)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import grpc

from ..core.types import Core, ImageInputs, Reconstruction, TaskName, TaskResult
from ..observe.metrics import Metrics
from ..protocol import tasks
from ..settings import Settings
from . import converters
from .gen.pixelserve.v1 import pixelserve_pb2 as pb
from .gen.pixelserve.v1 import pixelserve_pb2_grpc as pb_grpc
from .status import guarded, ordered_map, status_of
from .wire import received_bytes

T = TypeVar("T")


def _images_message(result: TaskResult[Reconstruction], tensors: bool, build: Callable[..., T]) -> T:
    """The answer and its message in one go, both off the loop for a big batch (PNGs, tensor copies)."""
    return converters.images_response(tasks.reconstruction(result, tensors), build)


class TaskServicer(pb_grpc.PixelServeServicer):
    def __init__(self, core: Core, settings: Settings, metrics: Metrics) -> None:
        self.core = core
        self.metrics = metrics
        self.stream_window = settings.max_batch_size

    async def _inputs(self, batch: pb.ImageBatch) -> ImageInputs:
        """The request's images as core inputs; a big batch's bytes are copied off the event loop."""
        return await self.core.offload.sized(received_bytes(), converters.image_inputs, batch)

    async def _classify(self, request: pb.ClassifyRequest) -> pb.ClassifyResponse:
        with self.core.request("classify", request.model, "grpc"):
            ref = converters.model_ref(request.model, request.version)
            inputs = await self._inputs(request.inputs)
            result = await self.core.classify(ref, inputs, top_k=tasks.parse_top_k(tasks.unset(request.top_k)))
        answer = await self.core.offload.sized(tasks.answer_work(result), tasks.classification, result)
        return converters.classify_response(answer, request.request_id)

    @guarded
    async def Classify(self, request: pb.ClassifyRequest, context: grpc.aio.ServicerContext) -> pb.ClassifyResponse:
        return await self._classify(request)

    async def ClassifyStream(
        self, requests: AsyncIterator[pb.ClassifyRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ClassifyResponse]:
        async def answer(request: pb.ClassifyRequest) -> pb.ClassifyResponse:
            try:
                return await self._classify(request)
            except Exception as error:  # in-band: the stream goes on
                code, message = status_of(error, "ClassifyStream")
                return pb.ClassifyResponse(
                    request_id=request.request_id, error=pb.Status(code=code.value[0], message=message)
                )

        async for response in ordered_map(requests, answer, self.stream_window):
            yield response

    async def _images(
        self, task: TaskName, request: pb.DenoiseRequest | pb.ReconstructRequest, build: Callable[..., T]
    ) -> T:
        run = self.core.denoise if task == "denoise" else self.core.reconstruct
        with self.core.request(task, request.model, "grpc"):
            ref = converters.model_ref(request.model, request.version)
            result = await run(ref, await self._inputs(request.inputs))
        work = tasks.answer_work(result)
        return await self.core.offload.sized(work, _images_message, result, request.return_tensor, build)

    @guarded
    async def Denoise(self, request: pb.DenoiseRequest, context: grpc.aio.ServicerContext) -> pb.DenoiseResponse:
        return await self._images("denoise", request, pb.DenoiseResponse)

    @guarded
    async def Reconstruct(
        self, request: pb.ReconstructRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReconstructResponse:
        return await self._images("reconstruct", request, pb.ReconstructResponse)

    @guarded
    async def Encode(self, request: pb.EncodeRequest, context: grpc.aio.ServicerContext) -> pb.EncodeResponse:
        with self.core.request("encode", request.model, "grpc"):
            ref = converters.model_ref(request.model, request.version)
            result = await self.core.encode(ref, await self._inputs(request.inputs))
        answer = await self.core.offload.sized(tasks.answer_work(result), tasks.encoding, result)
        return converters.encode_response(answer)

    @guarded
    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        return converters.list_models_response(tasks.model_index(self.core))

    @guarded
    async def GetModel(self, request: pb.GetModelRequest, context: grpc.aio.ServicerContext) -> pb.ModelMetadata:
        info = self.core.model_info(converters.model_ref(request.model, request.version))
        return converters.model_metadata(tasks.model_metadata(info))
