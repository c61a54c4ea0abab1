"""Standard gRPC health checking and reflection: open without the API key, in step with the core."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from pydantic import SecretStr

from pixelserve.service.grpc.gen.pixelserve.v1 import pixelserve_pb2 as pb
from pixelserve.service.grpc.gen.pixelserve.v1 import pixelserve_pb2_grpc as pb_grpc
from tests.service.grpc_support import grpc_server
from tests.service.models import CLASSIFIER, DENOISER

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
KEY = SecretStr("s3cret")


async def check(channel: grpc.aio.Channel, service: str) -> int:
    response = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service))
    return response.status


async def test_server_services_and_models_are_serving_without_a_key(core, settings, metrics) -> None:
    async with (
        grpc_server(core, settings, metrics, api_key=KEY) as address,
        grpc.aio.insecure_channel(address) as channel,
    ):
        for service in ("", "pixelserve.v1.PixelServe", "inference.GRPCInferenceService", CLASSIFIER):
            assert await check(channel, service) == SERVING, service


async def test_unknown_service_is_not_found(core, settings, metrics) -> None:
    async with grpc_server(core, settings, metrics) as address, grpc.aio.insecure_channel(address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await check(channel, "no-such-model")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_unloaded_model_and_draining_server_are_not_serving(core, settings, metrics) -> None:
    async with grpc_server(core, settings, metrics) as address, grpc.aio.insecure_channel(address) as channel:
        await core.unload(DENOISER)
        assert await check(channel, DENOISER) == NOT_SERVING
        assert await check(channel, CLASSIFIER) == SERVING
        core.begin_shutdown()
        assert await check(channel, "") == NOT_SERVING
        assert await check(channel, CLASSIFIER) == NOT_SERVING


async def test_watch_reports_a_model_going_away(core, settings, metrics) -> None:
    async with grpc_server(core, settings, metrics) as address, grpc.aio.insecure_channel(address) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=DENOISER))
        assert (await watch.read()).status == SERVING
        await core.unload(DENOISER)
        assert (await asyncio.wait_for(watch.read(), timeout=5)).status == NOT_SERVING
        watch.cancel()


async def test_reflection_lists_every_service_without_a_key(core, settings, metrics) -> None:
    async with (
        grpc_server(core, settings, metrics, api_key=KEY) as address,
        grpc.aio.insecure_channel(address) as channel,
    ):
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)

        async def ask() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
            yield reflection_pb2.ServerReflectionRequest(list_services="")
            yield reflection_pb2.ServerReflectionRequest(file_containing_symbol="inference.ModelInferRequest")

        listed, described = [r async for r in stub.ServerReflectionInfo(ask())]
    names = {s.name for s in listed.list_services_response.service}
    assert names == {
        "pixelserve.v1.PixelServe",
        "inference.GRPCInferenceService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }
    assert len(described.file_descriptor_response.file_descriptor_proto) == 2  # grpc_service + model_config


async def test_streams_are_refused_without_the_key(core, settings, metrics) -> None:
    async with (
        grpc_server(core, settings, metrics, api_key=KEY) as address,
        grpc.aio.insecure_channel(address) as channel,
    ):
        call = pb_grpc.PixelServeStub(channel).ClassifyStream(iter([pb.ClassifyRequest(model=CLASSIFIER)]))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in call:
                pass
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
