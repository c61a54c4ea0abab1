"""Bad requests over real HTTP: the right status from the error table, a message that says what was wrong,
never a 500, a 422 or a hang. Task API errors are {"error": {"code", "message"}}, V2 errors {"error": "..."}."""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest
import tritonclient.http.aio as triton_aio
from pydantic import SecretStr
from tritonclient.utils import InferenceServerException

from tests.service.models import AUTOENCODER, CLASSIFIER, DENOISER, encode_image, random_images
from tests.service.rest_support import rest_server

PNG = encode_image(random_images(1)[0])
LIMIT = 64 * 1024


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge size: a decompression bomb as far as any decoder can tell."""
    data = bytearray(PNG)
    header = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + header))
    return bytes(data)


@pytest.fixture
async def client(core, settings, metrics) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        rest_server(core, settings, metrics, max_request_bytes=LIMIT) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        yield http


def v2_uint8(shape: list[int], data: list[int] | None = None, datatype: str = "UINT8") -> dict:
    count = int(np.prod(shape))
    return {"inputs": [{"name": "image", "shape": shape, "datatype": datatype, "data": data or [0] * count}]}


TASK_CASES = [
    # (name, path, request kwargs, status, code, message fragment)
    ("corrupt png", f"/v1/models/{CLASSIFIER}:classify", {"content": PNG[:40] + b"\x00" * 40}, 400,
     "INVALID_ARGUMENT", "not a valid PNG"),
    ("not an image", f"/v1/models/{CLASSIFIER}:classify", {"content": b"hello world"}, 400,
     "INVALID_ARGUMENT", "unsupported image format"),
    ("bad base64", f"/v1/models/{CLASSIFIER}:classify", {"json": {"images": ["not*base64!"]}}, 400,
     "INVALID_ARGUMENT", "images[0] is not valid base64"),
    ("json without images", f"/v1/models/{CLASSIFIER}:classify", {"json": {"pictures": []}}, 400,
     "INVALID_ARGUMENT", "images"),
    ("empty batch", f"/v1/models/{CLASSIFIER}:classify", {"json": {"images": []}}, 400,
     "INVALID_ARGUMENT", "empty batch"),
    ("empty body", f"/v1/models/{CLASSIFIER}:classify", {"content": b""}, 400, "INVALID_ARGUMENT", "empty"),
    ("bad top_k", f"/v1/models/{CLASSIFIER}:classify?top_k=many", {"content": PNG}, 400,
     "INVALID_ARGUMENT", "top_k"),
    ("bad version", f"/v1/models/{CLASSIFIER}/versions/latest:classify", {"content": PNG}, 400,
     "INVALID_ARGUMENT", "version"),
    ("unknown model", "/v1/models/no-such-model:classify", {"content": PNG}, 404, "NOT_FOUND", "no-such-model"),
    ("unknown version", f"/v1/models/{CLASSIFIER}/versions/7:classify", {"content": PNG}, 404,
     "NOT_FOUND", "no version 7"),
    ("dot-dot name", "/v1/models/..:classify", {"content": PNG}, 404, "NOT_FOUND", "invalid model name"),
    ("encoded dot-dot name", "/v1/models/%2E%2E:classify", {"content": PNG}, 404, "NOT_FOUND", "invalid model name"),
    ("encoded traversal", "/v1/models/..%2F..%2Fetc%2Fpasswd:classify", {"content": PNG}, 404, "NOT_FOUND", ""),
    ("wrong task", f"/v1/models/{DENOISER}:classify", {"content": PNG}, 400, "INVALID_ARGUMENT", "cannot classify"),
    ("no latent", f"/v1/models/{DENOISER}:encode", {"content": PNG}, 400, "INVALID_ARGUMENT", "latent"),
    ("bomb header", f"/v1/models/{CLASSIFIER}:classify", {"content": png_claiming(100_000, 100_000)}, 413,
     "INVALID_ARGUMENT", "decompression bomb"),
    ("over max pixels", f"/v1/models/{CLASSIFIER}:classify", {"content": png_claiming(5000, 5000)}, 413,
     "INVALID_ARGUMENT", "max_image_pixels"),
    ("oversized body", f"/v1/models/{CLASSIFIER}:classify", {"content": b"\x89PNG" + b"\x00" * LIMIT}, 413,
     "INVALID_ARGUMENT", "limit"),
    ("unsupported type", f"/v1/models/{CLASSIFIER}:classify", {"content": PNG, "headers": {"Content-Type": "text/csv"}},
     400, "INVALID_ARGUMENT", "Content-Type"),
    ("unknown route", "/v1/nothing", {"content": b""}, 404, "NOT_FOUND", "Not Found"),
]  # fmt: skip


async def test_task_api_errors_have_status_code_and_message(client) -> None:
    """One server for the whole table (a server per case would cost more than the cases)."""
    wrong = []
    for case, path, kwargs, status, code, fragment in TASK_CASES:
        response = await client.post(path, **kwargs)
        error = response.json().get("error", {})
        if (response.status_code, error.get("code")) != (status, code) or fragment not in error.get("message", ""):
            wrong.append(f"{case}: {response.status_code} {response.text}")
    assert not wrong, "\n".join(wrong)


async def test_streamed_body_over_the_limit_is_cut_off_with_413(client) -> None:
    """No Content-Length (chunked): the server stops reading at the limit instead of buffering it all."""

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(64):
            yield b"\x00" * 4096

    response = await client.post(f"/v1/models/{CLASSIFIER}:classify", content=chunks())
    assert response.status_code == 413
    assert "limit" in response.json()["error"]["message"]


async def test_multipart_with_a_corrupt_file_names_the_file(client) -> None:
    files = [("f", ("a.png", PNG, "image/png")), ("f", ("b.png", PNG[:30], "image/png"))]
    response = await client.post(f"/v1/models/{CLASSIFIER}:classify", files=files)
    assert response.status_code == 400
    assert "image 1" in response.json()["error"]["message"]


V2_CASES = [
    ("wrong shape", v2_uint8([1, 9, 9, 1]), {}, 400, "expected a tensor of shape"),
    ("wrong dtype", v2_uint8([1, 8, 8, 1], datatype="FP64"), {}, 400, "not accepted"),
    ("uint8 out of range", v2_uint8([1, 8, 8, 1], data=[300] * 64), {}, 400, "0..255"),
    ("data count", v2_uint8([2, 8, 8, 1], data=[0] * 64), {}, 400, "shape says 128 elements"),
    ("wrong input name", {"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": ["AA=="]}]}, {}, 400,
     "unknown input 'x'"),
    ("bad base64 bytes", {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["***"]}]}, {},
     400, "not valid base64"),
    ("empty batch", {"inputs": [{"name": "image", "shape": [0], "datatype": "BYTES", "data": []}]}, {}, 400,
     "empty batch"),
    ("no inputs", {"inputs": []}, {}, 400, "inputs"),
    ("unknown output", {**v2_uint8([1, 8, 8, 1]), "outputs": [{"name": "logits"}]}, {}, 400, "unknown output"),
    ("header past body", v2_uint8([1, 8, 8, 1]), {"Inference-Header-Content-Length": "99999"}, 400,
     "Inference-Header-Content-Length"),
]  # fmt: skip


async def test_v2_errors_are_plain_messages(client) -> None:
    wrong = []
    for case, body, headers, status, fragment in V2_CASES:
        response = await client.post(f"/v2/models/{CLASSIFIER}/infer", json=body, headers=headers)
        error = response.json().get("error")
        if response.status_code != status or not isinstance(error, str) or fragment not in error:
            wrong.append(f"{case}: {response.status_code} {response.text}")
    assert not wrong, "\n".join(wrong)


async def test_v2_unknown_model_traversal_and_malformed_binary(client) -> None:
    unknown = await client.get("/v2/models/no-such-model")
    traversal = await client.post("/v2/models/%2E%2E/infer", json=v2_uint8([1, 8, 8, 1]))
    not_json = await client.post(f"/v2/models/{CLASSIFIER}/infer", content=b"{nope")
    header = b'{"inputs":[{"name":"image","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":8}}]}'
    truncated = await client.post(
        f"/v2/models/{CLASSIFIER}/infer",
        content=header + b"\x10\x00\x00\x00abcd",  # claims 16 bytes, holds 4
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert unknown.status_code == 404 and "no-such-model" in unknown.json()["error"]
    assert traversal.status_code == 404 and "invalid model name" in traversal.json()["error"]
    assert not_json.status_code == 400 and "invalid inference request" in not_json.json()["error"]
    assert truncated.status_code == 400 and "shorter than its length prefixes" in truncated.json()["error"]


async def test_gzip_bomb_stops_at_the_body_limit(client) -> None:
    bomb = zlib.compress(b"\x00" * (LIMIT * 64))
    assert len(bomb) < LIMIT
    response = await client.post(
        f"/v2/models/{CLASSIFIER}/infer", content=bomb, headers={"Content-Encoding": "deflate"}
    )
    assert response.status_code == 413
    assert "inflated" in response.json()["error"]


async def test_tritonclient_shows_the_server_message(client) -> None:
    triton = triton_aio.InferenceServerClient(str(client.base_url).removeprefix("http://").rstrip("/"))
    tensor = triton_aio.InferInput("image", [1, 4, 4, 1], "UINT8")
    tensor.set_data_from_numpy(np.zeros((1, 4, 4, 1), dtype=np.uint8))
    try:
        with pytest.raises(InferenceServerException, match="expected a tensor of shape"):
            await triton.infer(AUTOENCODER, [tensor])
        with pytest.raises(InferenceServerException, match="no-such-model"):
            await triton.get_model_metadata("no-such-model")
    finally:
        await triton.close()


@pytest.fixture
async def keyed(core, settings, metrics) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        rest_server(core, settings, metrics, api_key=SecretStr("s3cret-key")) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        yield http


async def test_missing_or_wrong_api_key_is_refused_with_401_on_every_api_route(keyed) -> None:
    for headers, fragment in (
        ({}, "missing API key"),
        ({"X-API-Key": "wrong"}, "wrong API key"),
        ({"Authorization": "Bearer nope"}, "wrong API key"),
        ({"Authorization": "Basic czNjcmV0LWtleQ=="}, "missing API key"),
    ):
        task = await keyed.post(f"/v1/models/{CLASSIFIER}:classify", content=PNG, headers=headers)
        index = await keyed.get("/v1/models", headers=headers)
        v2 = await keyed.post(f"/v2/models/{CLASSIFIER}/infer", json=v2_uint8([1, 8, 8, 1]), headers=headers)
        assert task.status_code == index.status_code == v2.status_code == 401, headers
        assert task.json()["error"]["code"] == "UNAUTHENTICATED"
        assert fragment in task.json()["error"]["message"] and fragment in v2.json()["error"], headers


async def test_right_api_key_in_either_header_is_accepted_and_health_stays_open(keyed) -> None:
    by_header = await keyed.post(f"/v1/models/{CLASSIFIER}:classify", content=PNG, headers={"X-API-Key": "s3cret-key"})
    by_bearer = await keyed.post(
        f"/v1/models/{CLASSIFIER}:classify", content=PNG, headers={"Authorization": "Bearer s3cret-key"}
    )
    assert by_header.status_code == by_bearer.status_code == 200
    for path in ("/v2/health/live", "/v2/health/ready", "/metrics"):
        assert (await keyed.get(path)).status_code == 200, path


async def test_base64_in_json_is_decoded_strictly(client) -> None:
    padded = base64.b64encode(PNG).decode()
    response = await client.post(f"/v1/models/{CLASSIFIER}:classify", json={"images": [padded + "\n!"]})
    assert response.status_code == 400
