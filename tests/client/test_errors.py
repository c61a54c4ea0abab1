"""One exception hierarchy for both transports: the server's statuses and codes, and the client's own failures
(nothing listening, no answer in time), each raise the same class over REST and gRPC."""

from __future__ import annotations

import asyncio

import pytest

from pixelserve.client import (
    AsyncClient,
    Client,
    DeadlineExceeded,
    InvalidInput,
    ModelNotFound,
    Overloaded,
    PayloadTooLarge,
    PermissionDenied,
    PixelServeError,
    Retry,
    ServerError,
    Unauthenticated,
    Unavailable,
)
from pixelserve.client.errors import from_grpc, from_http
from tests.client.conftest import API_KEY
from tests.service.grpc_support import free_port, grpc_server
from tests.service.models import CLASSIFIER, encode_image, random_images
from tests.service.rest_support import rest_server

NO_RETRY = Retry(retries=0)


@pytest.fixture
def settings(settings):
    """A core whose batches wait 1.5 s to fill, so a short client timeout expires while the server works."""
    return settings.model_copy(update={"batch_policy": "fill", "max_queue_delay_ms": 1500.0, "max_batch_size": 64})


@pytest.mark.parametrize(
    ("status", "body", "cls", "code"),
    [
        (400, {"error": {"code": "INVALID_ARGUMENT", "message": "bad"}}, InvalidInput, "INVALID_ARGUMENT"),
        (401, {"error": {"code": "UNAUTHENTICATED", "message": "key"}}, Unauthenticated, "UNAUTHENTICATED"),
        (403, {"error": {"code": "PERMISSION_DENIED", "message": "no"}}, PermissionDenied, "PERMISSION_DENIED"),
        (404, {"error": "model 'x' not found"}, ModelNotFound, "NOT_FOUND"),
        (413, {"error": {"code": "INVALID_ARGUMENT", "message": "big"}}, PayloadTooLarge, "INVALID_ARGUMENT"),
        (429, {"error": {"code": "RESOURCE_EXHAUSTED", "message": "full"}}, Overloaded, "RESOURCE_EXHAUSTED"),
        (503, None, Unavailable, "UNAVAILABLE"),
        (504, None, DeadlineExceeded, "DEADLINE_EXCEEDED"),
        (500, {"error": {"code": "INTERNAL", "message": "boom"}}, ServerError, "INTERNAL"),
        (502, "<html>bad gateway</html>", ServerError, "INTERNAL"),
        (405, None, InvalidInput, "INVALID_ARGUMENT"),
    ],
)
def test_http_statuses_map_to_the_hierarchy(status: int, body: object, cls: type, code: str) -> None:
    error = from_http(status, body, {"retry-after": "2"} if status == 429 else {})
    assert type(error) is cls and error.code == code and error.status == status
    assert str(error).startswith(f"{code}: ")
    assert error.retry_after == (2.0 if status == 429 else None)
    assert error.retryable == (cls in (Overloaded, Unavailable))


@pytest.mark.parametrize(
    ("code", "trailers", "cls", "retry_after"),
    [
        ("INVALID_ARGUMENT", (), InvalidInput, None),
        ("NOT_FOUND", (), ModelNotFound, None),
        ("UNAUTHENTICATED", (), Unauthenticated, None),
        ("PERMISSION_DENIED", (), PermissionDenied, None),
        ("UNAVAILABLE", (), Unavailable, None),
        ("DEADLINE_EXCEEDED", (), DeadlineExceeded, None),
        ("INTERNAL", (), ServerError, None),
        ("RESOURCE_EXHAUSTED", (("grpc-retry-pushback-ms", "250"), ("retry-after", "9")), Overloaded, 0.25),
        ("RESOURCE_EXHAUSTED", (("retry-after", "0.5"),), Overloaded, 0.5),  # a server before the pushback trailer
        ("RESOURCE_EXHAUSTED", (), PayloadTooLarge, None),  # grpc's own message-size refusal
    ],
)
def test_grpc_codes_map_to_the_hierarchy(code: str, trailers: tuple, cls: type, retry_after: float | None) -> None:
    error = from_grpc(code, "details", trailers)
    assert type(error) is cls and error.code == code and error.retry_after == retry_after and error.status is None


def test_a_missing_or_wrong_api_key_is_unauthenticated(url: str) -> None:
    for key in (None, "wrong-key"):
        with Client(url, api_key=key, retry=NO_RETRY) as client:
            with pytest.raises(Unauthenticated):
                client.classify(CLASSIFIER, random_images(1)[0])
            with pytest.raises(Unauthenticated):
                client.models()
    with Client(url, api_key=API_KEY) as client:
        assert client.models()


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_nothing_listening_is_unavailable_after_the_retries(scheme: str) -> None:
    with Client(f"{scheme}://127.0.0.1:{free_port()}", retry=Retry(retries=2, backoff_s=0.01)) as client:
        with pytest.raises(Unavailable):
            client.health()
        with pytest.raises(Unavailable):
            client.classify(CLASSIFIER, random_images(1)[0])
        assert client.retried == 4  # two calls, each sent three times


def test_addresses_and_tls_options_are_checked_before_anything_is_sent() -> None:
    with pytest.raises(ValueError, match="start the address with"):
        Client("127.0.0.1:8001")
    with pytest.raises(ValueError, match="TLS options need"):
        Client("http://127.0.0.1:8000", ca_file="ca.pem")
    with pytest.raises(ValueError, match="needs its key"):
        Client("https://127.0.0.1:8000", cert_file="client.pem")


async def test_limits_raise_payload_too_large_on_both_transports(core, settings, metrics) -> None:
    images = random_images(64, seed=31)
    async with (
        rest_server(core, settings, metrics, max_request_bytes=2048) as rest_url,
        grpc_server(core, settings, metrics, max_grpc_message_bytes=images.nbytes // 2) as grpc_address,
    ):
        for url in (rest_url, f"grpc://{grpc_address}"):
            async with AsyncClient(url, retry=Retry(retries=3, backoff_s=0.2)) as client:
                with pytest.raises(PayloadTooLarge) as raised:
                    await client.classify(CLASSIFIER, images)
                assert client.retried == 0, url  # sending it again cannot help
                assert isinstance(raised.value, InvalidInput)


async def test_no_answer_within_the_timeout_is_deadline_exceeded(core, settings, metrics) -> None:
    async with rest_server(core, settings, metrics) as rest_url, grpc_server(core, settings, metrics) as address:
        for url in (rest_url, f"grpc://{address}"):
            async with AsyncClient(url, timeout=0.3) as client:
                started = asyncio.get_running_loop().time()
                with pytest.raises(DeadlineExceeded):
                    await client.classify(CLASSIFIER, random_images(1)[0])
                assert asyncio.get_running_loop().time() - started < 1.4  # not retried, not waited for the batch
                assert client.retried == 0


def test_every_error_is_a_pixelserve_error_with_the_servers_message(client: Client) -> None:
    png = encode_image(random_images(1)[0])
    with pytest.raises(PixelServeError) as raised:
        client.classify(CLASSIFIER, png[: len(png) // 2])  # a truncated file
    assert isinstance(raised.value, InvalidInput) and raised.value.code == "INVALID_ARGUMENT"
    assert raised.value.message and raised.value.message in str(raised.value)
