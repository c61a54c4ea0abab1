"""Bad requests over gRPC end with the status the error table gives them, never a crash or a hang."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
import pytest
from pydantic import SecretStr

from pixelserve.service.errors import ModelNotFound
from pixelserve.service.grpc.gen.inference import grpc_service_pb2 as v2_pb
from pixelserve.service.grpc.gen.inference import grpc_service_pb2_grpc as v2_grpc
from pixelserve.service.grpc.gen.pixelserve.v1 import pixelserve_pb2 as pb
from pixelserve.service.grpc.gen.pixelserve.v1 import pixelserve_pb2_grpc as pb_grpc
from pixelserve.service.grpc.status import guarded
from tests.service.grpc_support import grpc_server
from tests.service.models import CLASSIFIER, DENOISER, encode_image, random_images

PNG = encode_image(random_images(1)[0])


def classify(model: str = CLASSIFIER, version: int = 0, **inputs) -> pb.ClassifyRequest:
    batch = pb.ImageBatch(**inputs) if inputs else pb.ImageBatch(images=[pb.Image(encoded=PNG)])
    return pb.ClassifyRequest(model=model, version=version, inputs=batch)


@pytest.fixture
async def channel(core, settings, metrics) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc_server(core, settings, metrics) as address, grpc.aio.insecure_channel(address) as opened:
        yield opened


async def code_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.details()  # every error says what was wrong
    return caught.value.code()


@pytest.mark.parametrize(
    "request_",
    [
        classify(images=[pb.Image(encoded=b"\x89PNG\r\n\x1a\n but then garbage")]),
        classify(images=[pb.Image()]),
        classify(images=[]),
        classify(batch=pb.Tensor(dtype=pb.Tensor.DATA_TYPE_UINT8, shape=[1, 5, 5, 1], data=bytes(25))),
        classify(batch=pb.Tensor(dtype=pb.Tensor.DATA_TYPE_UINT8, shape=[1, 8, 8, 1], data=bytes(10))),
        classify(batch=pb.Tensor(shape=[1, 8, 8, 1], data=bytes(64))),
        classify(images=[pb.Image(encoded=PNG), pb.Image(tensor=pb.Tensor())]),
    ],
    ids=["corrupt-image", "empty-image", "no-images", "wrong-shape", "short-data", "no-dtype", "mixed"],
)
async def test_bad_input_is_invalid_argument(channel, request_) -> None:
    assert await code_of(pb_grpc.PixelServeStub(channel).Classify(request_)) == grpc.StatusCode.INVALID_ARGUMENT


async def test_unsupported_task_is_invalid_argument(channel) -> None:
    stub = pb_grpc.PixelServeStub(channel)
    request = pb.EncodeRequest(model=DENOISER, inputs=pb.ImageBatch(images=[pb.Image(encoded=PNG)]))
    assert await code_of(stub.Encode(request)) == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    ("model", "version"), [("no-such-model", 0), (CLASSIFIER, 7), ("../tiny-classifier", 0), ("..", 1)]
)
async def test_unknown_model_or_version_is_not_found(channel, model, version) -> None:
    stub = pb_grpc.PixelServeStub(channel)
    assert await code_of(stub.Classify(classify(model, version))) == grpc.StatusCode.NOT_FOUND
    assert await code_of(stub.GetModel(pb.GetModelRequest(model=model, version=version))) == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("version", ["7", "x", "-1"])
async def test_v2_bad_or_unknown_version_is_rejected(channel, version) -> None:
    stub = v2_grpc.GRPCInferenceServiceStub(channel)
    code = await code_of(stub.ModelMetadata(v2_pb.ModelMetadataRequest(name=CLASSIFIER, version=version)))
    assert code == (grpc.StatusCode.NOT_FOUND if version == "7" else grpc.StatusCode.INVALID_ARGUMENT)


@pytest.mark.parametrize(
    ("name", "datatype", "shape", "raw"),
    [
        ("pixels", "UINT8", [1, 8, 8, 1], bytes(64)),
        ("image", "INT64", [1, 8, 8, 1], bytes(512)),
        ("image", "UINT8", [1, 8, 8, 1], bytes(63)),
        ("image", "UINT8", [1, 4, 4, 1], bytes(16)),
        ("image", "BYTES", [1], b"\x05\x00\x00\x00ab"),
        ("image", "BYTES", [1], b"\x02\x00\x00\x00ab"),
    ],
    ids=["unknown-input", "unsupported-type", "short-raw", "wrong-shape", "truncated-bytes", "not-an-image"],
)
async def test_v2_bad_input_is_invalid_argument(channel, name, datatype, shape, raw) -> None:
    request = v2_pb.ModelInferRequest(
        model_name=CLASSIFIER,
        inputs=[v2_pb.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=shape)],
        raw_input_contents=[raw],
    )
    code = await code_of(v2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


async def test_message_over_the_size_limit_is_refused(core, settings, metrics) -> None:
    big = pb.Image(encoded=b"\x89PNG" + bytes(4096))
    async with (
        grpc_server(core, settings, metrics, max_grpc_message_bytes=2048) as address,
        grpc.aio.insecure_channel(address) as channel,
    ):
        stub = pb_grpc.PixelServeStub(channel)
        assert await code_of(stub.Classify(classify(images=[big]))) == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert (await stub.Classify(classify())).results  # a small request still works


async def test_full_queue_is_resource_exhausted_with_retry_after(model_repository, metrics) -> None:
    from pixelserve.service.settings import Settings
    from pixelserve.service.wiring import build_core

    settings = Settings(
        model_repository=model_repository,
        device="cpu",
        intra_op_threads=1,
        max_batch_size=64,
        max_queue_size=64,
        max_queue_delay_ms=300.0,  # the first request waits for its batch to fill while the others arrive
        batch_policy="fill",
        hot_reload=False,
        warmup=False,
    )
    core = await build_core(settings, metrics)
    try:
        async with grpc_server(core, settings, metrics) as address, grpc.aio.insecure_channel(address) as channel:
            stub = pb_grpc.PixelServeStub(channel)
            images = random_images(40)
            batch = pb.Tensor(dtype=pb.Tensor.DATA_TYPE_UINT8, shape=images.shape, data=images.tobytes())
            calls = [stub.Classify(classify(batch=batch)) for _ in range(8)]  # 40 + 40 > 64 queued images
            outcomes = await asyncio.gather(*calls, return_exceptions=True)
    finally:
        await core.close()
    rejected = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert rejected and len(rejected) < len(outcomes)
    assert {r.code() for r in rejected} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert all(dict(r.trailing_metadata()).get("retry-after") for r in rejected)


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ((), grpc.StatusCode.UNAUTHENTICATED),
        ((("x-api-key", "wrong"),), grpc.StatusCode.UNAUTHENTICATED),
        ((("authorization", "Bearer wrong"),), grpc.StatusCode.UNAUTHENTICATED),
        ((("x-api-key", "s3cret"),), grpc.StatusCode.OK),
        ((("authorization", "Bearer s3cret"),), grpc.StatusCode.OK),
        ((("trace-bin", b"\xff\xfe"), ("x-api-key", "s3cret")), grpc.StatusCode.OK),
        ((("x-api-key-bin", b"\xff"),), grpc.StatusCode.UNAUTHENTICATED),
    ],
    ids=["missing", "wrong-key", "wrong-bearer", "key", "bearer", "key-after-binary-metadata", "binary-key-only"],
)
async def test_api_key_is_required_when_configured(core, settings, metrics, metadata, expected) -> None:
    async with (
        grpc_server(core, settings, metrics, api_key=SecretStr("s3cret")) as address,
        grpc.aio.insecure_channel(address) as channel,
    ):
        calls = [
            pb_grpc.PixelServeStub(channel).Classify(classify(), metadata=metadata),
            v2_grpc.GRPCInferenceServiceStub(channel).ServerReady(v2_pb.ServerReadyRequest(), metadata=metadata),
        ]
        for call in calls:
            if expected == grpc.StatusCode.OK:
                await call
            else:
                assert await code_of(call) == expected


class _Exploding:
    """Not a stand-in for any of our components: a handler that fails in a way no ServiceError describes."""

    @guarded
    async def Call(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        raise RuntimeError("secret internals")


async def test_unexpected_error_is_internal_with_a_generic_message_and_a_log_line(caplog) -> None:
    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(_Exploding().Call)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Exploding", {"Call": handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await channel.unary_unary("/test.Exploding/Call")(b"")
    finally:
        await server.stop(None)
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in caught.value.details()
    assert any("unexpected error" in r.message and r.exc_info for r in caplog.records)


class _Late:
    """Raises a mapped error only after its client has cancelled: the status can no longer be sent."""

    def __init__(self) -> None:
        self.ended: list[BaseException] = []

    @guarded
    async def _call(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)
        raise ModelNotFound("gone")

    async def Call(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            return await self._call(request, context)
        except BaseException as error:
            self.ended.append(error)
            raise


async def test_an_error_after_the_client_cancelled_ends_the_call_as_cancelled_not_internal() -> None:
    """grpc raises ExecuteBatchError when the status of a cancelled call is sent; the edge once logged it as a
    server fault (INTERNAL) in the access log."""
    late = _Late()
    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(late.Call)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Late", {"Call": handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary("/test.Late/Call")(b"")
            await asyncio.sleep(0.3)
            call.cancel()
            for _ in range(100):
                if late.ended:
                    break
                await asyncio.sleep(0.02)
    finally:
        await server.stop(None)
    assert len(late.ended) == 1 and isinstance(late.ended[0], asyncio.CancelledError), late.ended
