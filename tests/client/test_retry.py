"""Overload: a server whose queue holds one request at a time refuses the rest with 429 / RESOURCE_EXHAUSTED and
says how long to wait; the client waits that long and sends again until every request is answered, sync and
async, over both transports. gRPC's own retry policy honours the server's grpc-retry-pushback-ms too."""

from __future__ import annotations

import asyncio
import json
import time

import grpc
import pytest

from pixelserve.client import AsyncClient, Client, InvalidInput, Overloaded, Retry, Unavailable
from pixelserve.client.gen.pixelserve.v1 import pixelserve_pb2 as pb
from pixelserve.client.gen.pixelserve.v1 import pixelserve_pb2_grpc as pb_grpc
from pixelserve.client.grpc_wire import tensor
from tests.service.grpc_support import grpc_server
from tests.service.models import CLASSIFIER, random_images, reference_session
from tests.service.rest_support import rest_server

IMAGES = random_images(8, seed=41)  # one request fills the queue
PATIENT = Retry(retries=50, backoff_s=0.01, max_backoff_s=0.05)


@pytest.fixture
def settings(settings):
    """At most 8 queued images, and a batch held open 100 ms to fill: one request of 8 at a time."""
    return settings.model_copy(
        update={"max_queue_size": 8, "max_batch_size": 64, "max_queue_delay_ms": 100.0, "batch_policy": "fill"}
    )


def _expected(settings) -> list[tuple[int, float]]:
    """onnxruntime's top-1 (index, probability) per image: the probabilities tell the 8 images apart."""
    session = reference_session(settings.model_repository, CLASSIFIER)
    (probabilities,) = session.run(["probabilities"], {"image": IMAGES})
    return [(int(p.argmax()), round(float(p.max()), 5)) for p in probabilities]


async def test_the_async_client_retries_a_full_queue_until_all_are_answered(core, settings, metrics) -> None:
    async with rest_server(core, settings, metrics) as rest_url, grpc_server(core, settings, metrics) as address:
        for url in (rest_url, f"grpc://{address}"):
            async with AsyncClient(url, retry=PATIENT) as client:
                started = time.monotonic()
                results = await asyncio.gather(*(client.classify(CLASSIFIER, IMAGES, top_k=1) for _ in range(6)))
                elapsed = time.monotonic() - started
            assert client.retried > 0, url
            for result in results:
                assert [(i.top[0].index, round(i.top[0].probability, 5)) for i in result] == _expected(settings)
            if url.startswith("http"):  # REST says Retry-After: 1 (whole seconds): nobody came back sooner
                assert elapsed >= 1.0


async def test_the_sync_client_retries_too(core, settings, metrics) -> None:
    async with rest_server(core, settings, metrics) as rest_url, grpc_server(core, settings, metrics) as address:
        for url in (rest_url, f"grpc://{address}"):
            with Client(url, retry=PATIENT) as client:
                calls = [asyncio.to_thread(client.classify, CLASSIFIER, IMAGES, top_k=1) for _ in range(4)]
                results = await asyncio.gather(*calls)
            assert client.retried > 0, url
            assert all(len(r) == 8 for r in results)


async def test_without_retries_overload_is_raised_with_the_servers_wait(core, settings, metrics) -> None:
    async with rest_server(core, settings, metrics) as rest_url, grpc_server(core, settings, metrics) as address:
        for url, floor in ((rest_url, 1.0), (f"grpc://{address}", 0.1)):
            async with AsyncClient(url, retry=Retry(retries=0)) as client:
                outcomes = await asyncio.gather(
                    *(client.classify(CLASSIFIER, IMAGES) for _ in range(4)), return_exceptions=True
                )
            refused = [o for o in outcomes if isinstance(o, Exception)]
            assert refused and all(isinstance(o, Overloaded) for o in refused), outcomes
            assert all(o.retry_after is not None and o.retry_after >= floor for o in refused)  # type: ignore[union-attr]
            assert client.retried == 0


async def test_the_grpc_server_sends_the_standard_pushback_trailer_and_grpcs_retry_policy_obeys_it(
    core, settings, metrics
) -> None:
    """A 20 s initial backoff that grpc would draw a wait from (0-20 s) unless the server's pushback says less."""
    policy = {
        "methodConfig": [{
            "name": [{"service": "pixelserve.v1.PixelServe"}],
            "retryPolicy": {"maxAttempts": 5, "initialBackoff": "20s", "maxBackoff": "20s", "backoffMultiplier": 1,
                            "retryableStatusCodes": ["RESOURCE_EXHAUSTED"]},
        }]
    }  # fmt: skip
    request = pb.ClassifyRequest(model=CLASSIFIER, inputs=pb.ImageBatch(batch=tensor(IMAGES)))
    async with grpc_server(core, settings, metrics) as address:
        async with grpc.aio.insecure_channel(address, options=[("grpc.enable_retries", 0)]) as plain:
            stub = pb_grpc.PixelServeStub(plain)
            outcomes = await asyncio.gather(*(stub.Classify(request) for _ in range(3)), return_exceptions=True)
        refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
        assert refused
        for error in refused:
            trailers = dict(error.trailing_metadata() or ())
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert int(trailers["grpc-retry-pushback-ms"]) == round(float(trailers["retry-after"]) * 1000)

        options = [("grpc.service_config", json.dumps(policy))]
        async with grpc.aio.insecure_channel(address, options=options) as retrying:
            stub = pb_grpc.PixelServeStub(retrying)
            started = time.monotonic()
            answers = await asyncio.gather(*(stub.Classify(request, timeout=15) for _ in range(3)))
            elapsed = time.monotonic() - started
    assert all(len(a.results) == 8 for a in answers)
    assert elapsed < 3.0  # retried after the pushback (hundreds of ms), not after grpc's own backoff


def test_only_not_now_answers_are_retried_and_never_sooner_than_asked() -> None:
    retry = Retry(retries=3, backoff_s=0.1, max_backoff_s=1.0, max_wait_s=10.0)
    overloaded = Overloaded("full", code="RESOURCE_EXHAUSTED", retry_after=2.0)
    waits = [retry.delay(0, overloaded) for _ in range(200)]
    assert all(w is not None and 2.0 <= w <= 2.5 for w in waits) and len(set(waits)) > 1  # spread, never early
    assert retry.delay(3, overloaded) is None  # out of retries
    plain = Unavailable("draining", code="UNAVAILABLE")  # no wait asked: exponential backoff with jitter
    assert all(0.05 <= (retry.delay(0, plain) or 0) <= 0.1 for _ in range(50))
    assert all(0.2 <= (retry.delay(2, plain) or 0) <= 0.4 for _ in range(50))
    assert all(0.5 <= (Retry(retries=9, max_backoff_s=1.0).delay(8, plain) or 0) <= 1.0 for _ in range(50))
    assert (Retry(max_wait_s=3.0).delay(0, Overloaded("full", retry_after=600)) or 0) <= 3.75
    assert retry.delay(0, InvalidInput("bad image")) is None  # a wrong request stays wrong


def test_the_expected_answers_tell_the_images_apart(settings) -> None:
    """Guards the overload tests' check: eight equal answers would not show each request got its own."""
    assert len(set(_expected(settings))) == len(IMAGES)
