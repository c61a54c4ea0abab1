"""Hot reload seen from HTTP clients: versions change under load without a single failed request."""

from __future__ import annotations

import asyncio
import time

import httpx
import numpy as np

from pixelserve.modelspec import OUTPUT_PROBABILITIES
from pixelserve.service.wiring import build_core
from tests.service.models import CLASSIFIER, encode_image, random_images, write_broken_onnx, write_classifier
from tests.service.rest_support import reference, rest_server


async def test_new_version_swaps_in_under_load_and_a_broken_one_leaves_it_serving(
    settings, metrics, model_repository
) -> None:
    reloading = settings.model_copy(update={"hot_reload": True, "reload_interval_s": 0.1})
    core = await build_core(reloading, metrics)
    image = random_images(1, seed=31)
    png = encode_image(image[0])
    answers: list[tuple[int, int | None]] = []  # (status, served version)
    stop = asyncio.Event()

    async def hammer(http: httpx.AsyncClient) -> None:
        while not stop.is_set():
            response = await http.post(f"/v1/models/{CLASSIFIER}:classify", content=png)
            body = response.json()
            answers.append((response.status_code, body.get("model", {}).get("version")))

    async def wait_for_version(version: int, timeout_s: float = 15.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not answers or answers[-1][1] != version:
            assert time.monotonic() < deadline, f"version {version} never served; last {answers[-3:]}"
            await asyncio.sleep(0.05)

    try:
        async with rest_server(core, reloading, metrics) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
            clients = [asyncio.create_task(hammer(http)) for _ in range(4)]
            await wait_for_version(1)
            write_classifier(model_repository, version=2, seed=42)
            await wait_for_version(2)
            write_broken_onnx(model_repository, version=3)
            await asyncio.sleep(1.0)  # ten scans: v3 is seen, fails to load, and v2 keeps serving
            count_before = len(answers)
            await asyncio.sleep(0.3)
            index = (await http.get("/v1/models")).json()["models"]
            latest = (await http.post(f"/v1/models/{CLASSIFIER}:classify", content=png)).json()
            stop.set()
            await asyncio.gather(*clients)
    finally:
        await core.close()

    assert all(status == 200 for status, _ in answers), [a for a in answers if a[0] != 200][:5]
    first_v2 = next(i for i, (_, version) in enumerate(answers) if version == 2)
    assert {version for _, version in answers[:first_v2]} == {1}
    # In-flight requests may finish on v1 just after the swap; once v2 serves, v1 is gone for good.
    assert {version for _, version in answers[first_v2 + 8 :]} == {2}
    assert len(answers) > count_before, "no traffic while v3 was failing"
    versions = {v["version"]: v for v in next(m for m in index if m["name"] == CLASSIFIER)["versions"]}
    assert versions[2]["state"] == "ready"
    assert versions[3]["state"] == "failed" and versions[3]["reason"]
    expected = reference(model_repository, CLASSIFIER, image, 2)[OUTPUT_PROBABILITIES][0]
    assert latest["model"]["version"] == 2
    np.testing.assert_allclose(latest["results"][0]["top"][0]["probability"], expected.max(), rtol=1e-5)
