"""One REST stack: the fast path (plain ASGI, raw and JSON bodies) and the FastAPI routes (multipart, and every
request when reached directly) decide the version, options, key, limit and answers alike.

Two ways in, compared: the served app over real HTTP, where a raw body takes the fast path and a multipart one
FastAPI's route; and the bare FastAPI app (``create_api``, no fast path in front) in-process, which answers the
raw body itself through the same endpoint.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from pixelserve.service.rest.app import create_api
from pixelserve.service.rest.schemas import (
    ClassifyResponse,
    EncodeResponse,
    ImageResponse,
    ModelIndex,
    ModelMetadata,
)
from tests.service.models import AUTOENCODER, CLASSIFIER, DENOISER, encode_image, random_images
from tests.service.rest_support import rest_server

PNG = encode_image(random_images(1, seed=21)[0])
KEY = "s3cret"
MODEL_OF = {"classify": CLASSIFIER, "denoise": DENOISER, "reconstruct": AUTOENCODER, "encode": AUTOENCODER}


def raw(png: bytes = PNG) -> dict[str, Any]:
    return {"content": png, "headers": {"Content-Type": "image/png", "Accept": "application/json"}}


def multipart(png: bytes = PNG, **fields: str) -> dict[str, Any]:
    return {
        "files": [("files", ("a.png", png, "image/png"))],
        "data": fields,
        "headers": {"Accept": "application/json"},
    }


def as_json(png: bytes = PNG, **fields: Any) -> dict[str, Any]:
    return {"json": {"images": [base64.b64encode(png).decode()], **fields}}


BODIES = {"raw": raw, "multipart": multipart, "json": as_json}


@pytest.fixture
async def served(core, settings, metrics) -> AsyncIterator[httpx.AsyncClient]:
    async with rest_server(core, settings, metrics) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        yield http


@pytest.fixture
async def bare(core, settings, metrics) -> AsyncIterator[httpx.AsyncClient]:
    """FastAPI alone: what the fast path sends on, and every route's OpenAPI view."""
    transport = httpx.ASGITransport(app=create_api(core, settings, metrics))
    async with httpx.AsyncClient(transport=transport, base_url="http://bare", timeout=10) as http:
        yield http


@pytest.mark.parametrize("body", sorted(BODIES))
@pytest.mark.parametrize("task", sorted(MODEL_OF))
@pytest.mark.parametrize("version", ["-1", "0", "latest", "٣", "1.0"])
async def test_a_malformed_version_is_invalid_however_the_body_comes(served, task, body, version) -> None:
    """``/versions/-1`` is not "the newest": a version is a positive integer in ASCII digits (the V2 rule), and
    anything else is 400 INVALID_ARGUMENT before the body is looked at, for a raw, a multipart or a JSON body."""
    response = await served.post(f"/v1/models/{MODEL_OF[task]}/versions/{version}:{task}", **BODIES[body]())
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "INVALID_ARGUMENT"
    assert error["message"] == f"model version must be a positive integer, got {version!r}"


@pytest.mark.parametrize("body", sorted(BODIES))
async def test_an_unknown_version_is_not_found_however_the_body_comes(served, body) -> None:
    response = await served.post(f"/v1/models/{CLASSIFIER}/versions/7:classify", **BODIES[body]())
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize("task", sorted(MODEL_OF))
async def test_raw_and_multipart_bodies_get_the_same_answer(served, task) -> None:
    path = f"/v1/models/{MODEL_OF[task]}/versions/1:{task}"
    query = {"resize": "letterbox", "return_input": "true", **({"top_k": "2"} if task == "classify" else {})}
    answers = [await served.post(path, params=query, **BODIES[body]()) for body in ("raw", "multipart", "json")]
    assert {a.status_code for a in answers} == {200}
    assert answers[0].json() == answers[1].json() == answers[2].json()
    assert answers[0].json()["prepared"]["resize"] == "letterbox" and answers[0].json()["prepared"]["inputs"]


async def test_the_fast_path_and_fastapi_answer_the_same_bytes(served, bare) -> None:
    requests = [
        (f"/v1/models/{CLASSIFIER}:classify", {"top_k": "2"}, raw()),
        (f"/v1/models/{CLASSIFIER}:classify", {"top_k": "0"}, raw()),
        (f"/v1/models/{CLASSIFIER}/versions/-1:classify", {}, raw()),
        (f"/v1/models/{DENOISER}:denoise", {}, {"content": PNG, "headers": {"Content-Type": "image/png"}}),
        (f"/v1/models/{DENOISER}:denoise", {"return_input": "1"}, as_json()),
        (f"/v1/models/{AUTOENCODER}:reconstruct", {"normalize": "none"}, raw()),
        (f"/v1/models/{AUTOENCODER}:encode", {}, as_json(top_k=2)),
        (f"/v1/models/{AUTOENCODER}:encode", {"resize": "sideways"}, raw()),
        (f"/v1/models/{CLASSIFIER}:classify", {}, {"content": PNG, "headers": {"Content-Type": "text/csv"}}),
        (f"/v2/models/{CLASSIFIER}/infer", {}, {"json": v2_bytes()}),
        (f"/v2/models/{CLASSIFIER}/versions/-1/infer", {}, {"json": v2_bytes()}),
    ]
    for path, query, body in requests:
        fast = await served.post(path, params=query, **body)
        slow = await bare.post(path, params=query, **body)
        assert (fast.status_code, fast.content) == (slow.status_code, slow.content), path
        for name in ("content-type", "x-model-name", "x-model-version", "x-reconstruction-error", "x-prepared"):
            assert fast.headers.get(name) == slow.headers.get(name), (path, name)


def v2_bytes() -> dict[str, Any]:
    data = [base64.b64encode(PNG).decode()]
    return {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": data}]}


@pytest.mark.parametrize(
    "request_",
    [
        ({"params": {"top_k": "0"}}, "raw"),
        ({"params": {"top_k": "²"}}, "multipart"),
        ({}, "multipart-field"),
        ({}, "json-field"),
    ],
    ids=["query-fast-path", "query-fastapi", "form-field", "json-field"],
)
async def test_top_k_is_checked_by_one_rule_wherever_it_is_sent(served, request_) -> None:
    extra, where = request_
    body = {
        "raw": raw(),
        "multipart": multipart(),
        "multipart-field": multipart(top_k="-3"),
        "json-field": as_json(top_k=0),
    }[where]
    response = await served.post(f"/v1/models/{CLASSIFIER}:classify", **extra, **body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"].startswith("top_k must be a positive integer, got ")


async def test_the_query_string_wins_over_the_body(served) -> None:
    path = f"/v1/models/{CLASSIFIER}:classify"
    by_body = await served.post(path, **as_json(top_k=1, return_input=True))
    by_query = await served.post(path, params={"top_k": "2", "return_input": "false"}, **as_json(top_k=1))
    assert len(by_body.json()["results"][0]["top"]) == 1 and by_body.json()["prepared"]["inputs"]
    assert len(by_query.json()["results"][0]["top"]) == 2 and by_query.json()["prepared"]["inputs"] == []


@pytest.mark.parametrize("body", ["raw", "multipart"])
async def test_the_api_key_is_one_rule_on_both_edges(core, settings, metrics, body) -> None:
    path = f"/v1/models/{CLASSIFIER}:classify"
    async with (
        rest_server(core, settings, metrics, api_key=SecretStr(KEY)) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        sent = BODIES[body]()
        cases = {
            "missing": ({}, 401, "missing API key"),
            "empty": ({"X-API-Key": ""}, 401, "missing API key"),
            "wrong": ({"X-API-Key": "nope"}, 401, "wrong API key"),
            "basic": ({"Authorization": f"Basic {KEY}"}, 401, "missing API key"),
            "header": ({"X-API-Key": KEY}, 200, None),
            "bearer": ({"Authorization": f"Bearer {KEY}"}, 200, None),
            "empty-then-bearer": ({"X-API-Key": "", "Authorization": f"bearer {KEY}"}, 200, None),
        }
        for case, (headers, status, message) in cases.items():
            response = await http.post(path, **{**sent, "headers": {**sent.get("headers", {}), **headers}})
            assert response.status_code == status, (case, response.text)
            if message is not None:
                assert response.json()["error"] == {"code": "UNAUTHENTICATED", "message": response.json()["error"][
                    "message"]} and response.json()["error"]["message"].startswith(message), case  # fmt: skip


@pytest.mark.parametrize("body", ["raw", "multipart", "json"])
async def test_the_body_limit_is_one_rule_on_both_edges(core, settings, metrics, body) -> None:
    big = PNG + bytes(8192)
    async with (
        rest_server(core, settings, metrics, max_request_bytes=4096) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        response = await http.post(f"/v1/models/{CLASSIFIER}:classify", **BODIES[body](big))
    assert response.status_code == 413, response.text
    assert response.json()["error"]["message"] == "request body is larger than the limit of 4096 bytes"


async def test_answers_are_what_the_openapi_schema_documents(served) -> None:
    """The answers are the task API's dictionaries; the pydantic models only document them, so check they do."""
    for task, schema in (("classify", ClassifyResponse), ("reconstruct", ImageResponse), ("denoise", ImageResponse),
                         ("encode", EncodeResponse)):  # fmt: skip
        response = await served.post(f"/v1/models/{MODEL_OF[task]}:{task}", params={"return_input": "1"}, **as_json())
        assert schema.model_validate(response.json()).model_dump(mode="json") == response.json(), task
    index = (await served.get("/v1/models")).json()
    assert ModelIndex.model_validate(index).model_dump(mode="json") == index
    metadata = (await served.get(f"/v1/models/{AUTOENCODER}")).json()
    assert ModelMetadata.model_validate(metadata).model_dump(mode="json") == metadata


async def test_openapi_documents_the_options_and_the_version(served) -> None:
    paths = (await served.get("/openapi.json")).json()["paths"]
    classify = paths["/v1/models/{name}/versions/{version}:classify"]["post"]
    parameters = {p["name"]: p for p in classify["parameters"]}
    assert set(parameters) == {"name", "version", "top_k", "resize", "normalize", "return_input"}
    assert parameters["version"]["in"] == "path" and parameters["top_k"]["schema"]["minimum"] == 1
    denoise = {p["name"] for p in paths["/v1/models/{name}:denoise"]["post"]["parameters"]}
    assert denoise == {"name", "resize", "normalize", "return_input"}
    assert "multipart/form-data" in classify["requestBody"]["content"]
    assert "/v2/models/{name}/infer" in paths
