"""inference.GRPCInferenceService: the KServe V2 / Triton gRPC protocol on the Core, for tritonclient and friends."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

import pixelserve
from pixelserve.service.grpc import v2_converters as v2
from pixelserve.service.grpc.gen.inference import grpc_service_pb2 as pb
from pixelserve.service.grpc.gen.inference import grpc_service_pb2_grpc as pb_grpc
from pixelserve.service.grpc.status import guarded, ordered_map, status_of
from pixelserve.service.metrics import Metrics
from pixelserve.service.settings import Settings
from pixelserve.service.types import Core, ModelRef

SERVER_NAME = "pixelserve"
EXTENSIONS = ("classification", "model_repository", "model_configuration", "statistics")


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
        return pb.ModelReadyResponse(ready=self.core.is_ready(v2.model_ref(request.name, request.version)))

    @guarded
    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=pixelserve.__version__, extensions=EXTENSIONS)

    @guarded
    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        return v2.metadata_response(self.core.model_info(v2.model_ref(request.name, request.version)))

    async def _infer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        with self.metrics.track(model=request.model_name, task="infer", protocol="grpc") as tracker:
            spec = self.core.model_info(v2.model_ref(request.model_name, request.model_version)).spec
            inputs, raw = v2.infer_inputs(request, spec.input.name)
            requested = v2.requested_outputs(request)
            result = await self.core.infer(
                ModelRef(spec.name, spec.version), inputs, [o.name for o in requested] or None
            )
            tracker.version = result.model.version
        return v2.infer_response(request.id, result, requested, labels=spec.labels, raw=raw)

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
        info = self.core.model_info(v2.model_ref(request.name, request.version))
        return v2.config_response(info, self.settings)

    @guarded
    async def ModelStatistics(
        self, request: pb.ModelStatisticsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelStatisticsResponse:
        ref = v2.model_ref(request.name, request.version) if request.name else None
        return v2.statistics_response(self.core.model_stats(ref))

    @guarded
    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryIndexResponse:
        return v2.index_response(self.core.index(), ready_only=request.ready)

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
