"""Issue 15's loop, end to end: 1,000 classify requests through the real REST server with payload logging on at
rate 1.0 give 1,000 rows whose outputs equal the responses (and hold no API key), `pixelserve dataset` turns
them into an image folder, and `pixelserve train` trains one epoch on it.

Needs the wiring to register the log: `build_core` adds a PayloadHook over `PayloadLog.from_settings(settings)`,
the REST adapter offers each sampled request, and `core.close()` closes the log (which commits its shards).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from pixelserve.service.observe.payloads.columns import columns
from pixelserve.service.observe.payloads.shards import read_rows, shard_files
from pixelserve.service.tools.dataset import EXIT_OK
from pixelserve.service.tools.dataset import main as dataset
from pixelserve.service.wiring import build_core
from pixelserve.training.data import load_dataset
from tests.service.models import CLASSIFIER, encode_image
from tests.service.payload_support import varied_images
from tests.service.rest_support import rest_server

pytestmark = pytest.mark.slow

REQUESTS = 1000
API_KEY = "payload-log-e2e-key-7c1d9e"
SECRET_HEADER = "payload-log-e2e-cookie-42ab"


def values(row: dict[str, Any]) -> Iterator[str | bytes]:
    for value in row.values():
        if isinstance(value, str | bytes):
            yield value
        elif isinstance(value, list):
            yield from (v for v in value if isinstance(v, str))


async def test_a_thousand_logged_requests_become_a_dataset_that_trains_an_epoch(
    settings, metrics, model_repository, tmp_path
) -> None:
    log_dir = tmp_path / "log"
    settings = settings.model_copy(
        update={"payload_log_dir": log_dir, "payload_log_rate": 1.0, "payload_log_shard_rows": 300,
                "api_key": SecretStr(API_KEY), "max_queue_size": 256}
    )  # fmt: skip
    images = varied_images(model_repository, REQUESTS, pool=4000)
    uploads = [encode_image(image) for image in images]
    core = await build_core(settings, metrics)
    try:
        hooks = [type(hook).__name__ for hook in core.hooks.hooks]
        assert "PayloadHook" in hooks, f"the wiring registers the payload log as a hook: {hooks}"
        headers = {"X-API-Key": API_KEY, "Cookie": f"session={SECRET_HEADER}"}
        async with (
            rest_server(core, settings, metrics) as url,
            httpx.AsyncClient(base_url=url, timeout=60, headers=headers) as http,
        ):
            gate = asyncio.Semaphore(8)

            async def classify(data: bytes) -> dict[str, Any]:
                async with gate:
                    response = await http.post(
                        f"/v1/models/{CLASSIFIER}:classify", content=data, headers={"Content-Type": "image/png"}
                    )
                assert response.status_code == 200, response.text
                return response.json()

            responses = await asyncio.gather(*(classify(data) for data in uploads))
    finally:
        await core.close()  # closes the payload log: every shard committed

    rows = [row for path in shard_files(log_dir) for row in read_rows(path)]
    assert len(rows) == REQUESTS
    assert all(tuple(row) == columns("classify") for row in rows)
    by_upload = {data: i for i, data in enumerate(uploads)}
    assert sorted(by_upload[row["image"]] for row in rows) == list(range(REQUESTS))  # each request once
    for row in rows:
        body = responses[by_upload[row["image"]]]
        (answer,) = body["results"]
        assert (row["model"], row["version"], row["status"]) == (body["model"]["name"], body["model"]["version"], "ok")
        assert row["top_labels"] == [s["label"] for s in answer["top"]]
        assert row["top_indices"] == [s["index"] for s in answer["top"]]
        assert row["top_probabilities"] == [s["probability"] for s in answer["top"]]
        assert (row["label"], row["probability"]) == (answer["top"][0]["label"], answer["top"][0]["probability"])
        assert (row["ood_score"], row["is_ood"]) == (answer.get("ood_score"), answer.get("is_ood"))
        assert row["task"] == "classify" and row["request_id"] and row["time"]
        for value in values(row):
            text = value if isinstance(value, bytes) else value.encode()
            assert API_KEY.encode() not in text and SECRET_HEADER.encode() not in text
    assert len({row["request_id"] for row in rows}) == REQUESTS
    for path in shard_files(log_dir):
        raw = path.read_bytes()
        assert API_KEY.encode() not in raw and SECRET_HEADER.encode() not in raw

    out = tmp_path / "dataset"
    assert dataset(["--input", str(log_dir), "--output", str(out)]) == EXIT_OK
    loaded = load_dataset(str(out), None, cache_dir=tmp_path / "cache")
    assert len(loaded.x_train) + len(loaded.x_test) == REQUESTS
    assert loaded.labels == sorted({row["label"] for row in rows})

    pytest.importorskip("keras", reason="training needs the [train] extra")
    from pixelserve.training.recipes import get_recipe
    from pixelserve.training.train import train

    overrides = {"dataset": str(out), "epochs": "1", "batch_size": "64", "augment_flip": "false"}
    recipe = get_recipe("fashion-mnist-classifier").with_overrides(overrides)  # mnist_cnn: fits 8x8 images
    runs = tmp_path / "runs"
    result = train(recipe, data_dir=None, repository=tmp_path / "models", runs_dir=runs, export=False, verbose=0)
    assert result.run_dir.is_relative_to(runs) and any(result.run_dir.iterdir())
