"""Overload over real HTTP: a full batcher queue answers 429 with Retry-After, never a 500 or a hang."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import numpy as np

from pixelserve.service.wiring import build_core
from tests.service.models import CLASSIFIER, encode_image, random_images
from tests.service.rest_support import rest_server


async def test_full_queue_is_rejected_with_429_and_retry_after_and_never_500(settings, metrics) -> None:
    # Two queued images at most, and a batch waits 300 ms to fill: a burst must overflow the queue.
    tight = settings.model_copy(
        update={"max_queue_size": 2, "max_batch_size": 8, "max_queue_delay_ms": 300.0, "batch_policy": "fill"}
    )
    core = await build_core(tight, metrics)
    png = encode_image(random_images(1)[0])
    v2_body = {
        "inputs": [{"name": "image", "shape": [1, 8, 8, 1], "datatype": "UINT8", "data": np.zeros(64, int).tolist()}]
    }
    try:
        async with (
            rest_server(core, tight, metrics) as url,
            httpx.AsyncClient(base_url=url, timeout=10, limits=httpx.Limits(max_connections=40)) as http,
        ):
            responses = await asyncio.gather(
                *(http.post(f"/v1/models/{CLASSIFIER}:classify", content=png) for _ in range(20)),
                *(http.post(f"/v2/models/{CLASSIFIER}/infer", json=v2_body) for _ in range(20)),
            )
    finally:
        await core.close()

    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {200, 429}, statuses
    assert statuses[200] >= 2 and statuses[429] >= 10, statuses
    for response in responses:
        if response.status_code != 429:
            continue
        assert int(response.headers["Retry-After"]) >= 1
        error = response.json()["error"]
        message = error if response.url.path.startswith("/v2") else error["message"]
        assert "retry later" in message
        if not response.url.path.startswith("/v2"):
            assert error["code"] == "RESOURCE_EXHAUSTED"
    exposition = metrics.render()[0].decode()
    assert 'code="RESOURCE_EXHAUSTED"' in exposition and 'protocol="rest"' in exposition
