"""inference.GRPCInferenceService: the KServe V2 / Triton gRPC protocol, for tritonclient and friends.

Each method decodes its protobuf request, asks `pixelserve.service.protocol.v2` (the same calls REST makes) and
encodes the answer; see `v2_converters` for the encoding.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from ..core.types import Core
from ..observe.metrics import Metrics
from ..protocol.v2 import metadata as v2_metadata
from ..protocol.v2.infer import check_declared_images
from ..protocol.v2.infer import infer as v2_infer
from ..protocol.v2.metadata import model_ref
from ..settings import Settings
from . import v2_converters as convert
from .gen.inference import grpc_service_pb2 as pb
from .gen.inference import grpc_service_pb2_grpc as pb_grpc
from .gen.inference import model_config_pb2 as config_pb
from .status import guarded, ordered_map, status_of
from .wire import received_bytes


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, core: Core, settings: Settings, metrics: Metrics) -> None:
        self.core = core
        self.settings = settings
        self.metrics = metrics

    @guarded
    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self.core.is_live())

    @guarded
    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.core.is_ready())

    @guarded
    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        ready = v2_metadata.model_ready(self.core, model_ref(request.name, request.version))
        return pb.ModelReadyResponse(ready=ready)

    @guarded
    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        return convert.message(v2_metadata.server_metadata(), pb.ServerMetadataResponse())

    @guarded
    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        info = self.core.model_info(model_ref(request.name, request.version))
        return convert.message(v2_metadata.model_metadata(info), pb.ModelMetadataResponse())

    async def _infer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        with self.core.request("infer", request.model_name, "grpc"):
            for tensor in request.inputs:  # an oversized batch is refused before its contents are read
                check_declared_images(tensor.shape, self.core.limits)
            # a big message's contents are copied (and BYTES split) off the event loop
            decoded, raw = await self.core.offload.sized(received_bytes(), convert.infer_request, request)
            response = await v2_infer(self.core, decoded)
        return convert.infer_response(response, raw=raw)

    @guarded
    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        return await self._infer(request)

    async def ModelStreamInfer(
        self, requests: AsyncIterator[pb.ModelInferRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        async def answer(request: pb.ModelInferRequest) -> pb.ModelStreamInferResponse:
            try:
                return pb.ModelStreamInferResponse(infer_response=await self._infer(request))
            except Exception as error:  # in-band, as Triton does: the stream goes on
                _, message = status_of(error, "ModelStreamInfer")
                return pb.ModelStreamInferResponse(
                    error_message=message,
                    infer_response=pb.ModelInferResponse(
                        model_name=request.model_name, model_version=request.model_version, id=request.id
                    ),
                )

        async for response in ordered_map(requests, answer, self.settings.max_batch_size):
            yield response

    @guarded
    async def ModelConfig(
        self, request: pb.ModelConfigRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelConfigResponse:
        info = self.core.model_info(model_ref(request.name, request.version))
        config = convert.message(v2_metadata.model_config(info, self.settings), config_pb.ModelConfig())
        return pb.ModelConfigResponse(config=config)

    @guarded
    async def ModelStatistics(
        self, request: pb.ModelStatisticsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelStatisticsResponse:
        ref = model_ref(request.name, request.version) if request.name else None
        return convert.message(v2_metadata.statistics(self.core.model_stats(ref)), pb.ModelStatisticsResponse())

    @guarded
    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryIndexResponse:
        models = v2_metadata.repository_index(self.core.index(), ready_only=request.ready)
        return convert.message({"models": models}, pb.RepositoryIndexResponse())

    @guarded
    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryModelLoadResponse:
        await self.core.load(request.model_name)
        return pb.RepositoryModelLoadResponse()

    @guarded
    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryModelUnloadResponse:
        await self.core.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()
