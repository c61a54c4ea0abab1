"""A real Prometheus (the Debian `prometheus` binary) scrapes /metrics and answers queries about our traffic."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from tests.prerequisites import require
from tests.service.grpc_support import free_port
from tests.service.models import CLASSIFIER, encode_image, random_images
from tests.service.rest_support import rest_server

PROMETHEUS = shutil.which("prometheus")
CONFIG = """
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: pixelserve
    scrape_interval: 1s
    static_configs:
      - targets: ["{target}"]
"""


@pytest.fixture
def prometheus_binary() -> str:
    require(PROMETHEUS is not None, "the prometheus binary is not installed (apt-get install prometheus)")
    return str(PROMETHEUS)


async def query(http: httpx.AsyncClient, promql: str) -> list[dict]:
    body = (await http.get("/api/v1/query", params={"query": promql})).json()
    assert body["status"] == "success", body
    return body["data"]["result"]


async def wait_for(http: httpx.AsyncClient, promql: str, minimum: float, timeout_s: float = 30.0) -> list[dict]:
    """Poll until every series of the query has reached `minimum` (scrapes land once a second)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result: list[dict] = []
        with contextlib.suppress(httpx.TransportError):  # Prometheus may still be starting
            result = await query(http, promql)
        if result and all(float(series["value"][1]) >= minimum for series in result):
            return result
        assert time.monotonic() < deadline, f"{promql} never reached {minimum}: {result}"
        await asyncio.sleep(0.25)


@pytest.mark.slow
async def test_prometheus_scrapes_request_counters_and_latency_histogram(
    prometheus_binary, core, settings, metrics, tmp_path: Path
) -> None:
    key = "scrape-test-key"  # /metrics must stay open for the scraper even with an API key set
    async with rest_server(core, settings, metrics, api_key=SecretStr(key)) as url:
        config = tmp_path / "prometheus.yml"
        config.write_text(CONFIG.format(target=url.removeprefix("http://")))
        port = free_port()
        with (tmp_path / "prometheus.log").open("wb") as log:
            process = subprocess.Popen(
                [
                    prometheus_binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            async with (
                httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}) as app,
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as prom,
            ):
                png = encode_image(random_images(1)[0])
                for _ in range(5):
                    assert (await app.post(f"/v1/models/{CLASSIFIER}:classify", content=png)).status_code == 200
                assert (await app.post("/v1/models/no-such-model:classify", content=png)).status_code == 404

                await wait_for(prom, 'up{job="pixelserve"}', 1)
                ok = await wait_for(
                    prom,
                    f'pixelserve_requests_total{{model="{CLASSIFIER}",task="classify",protocol="rest",code="OK"}}',
                    5,
                )
                await wait_for(prom, 'pixelserve_requests_total{protocol="rest",code="NOT_FOUND"}', 1)
                buckets = await wait_for(
                    prom, f'pixelserve_request_duration_seconds_bucket{{model="{CLASSIFIER}",le="+Inf"}}', 5
                )
        finally:
            process.terminate()
            process.wait(timeout=10)

    assert ok[0]["metric"]["version"] == "1"
    assert float(buckets[0]["value"][1]) == 5
