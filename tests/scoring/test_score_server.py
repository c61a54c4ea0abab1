"""`pixelserve score --server`: the same rows from a real server over gRPC (through pixelserve.client), with retries
when it pushes back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from pixelserve.client import Retry
from pixelserve.service.core.types import ImageInputs, ModelRef
from pixelserve.service.errors import PayloadTooLarge
from pixelserve.service.scoring.cli import EXIT_SOME_INPUTS_FAILED
from pixelserve.service.scoring.engine_server import RemoteRunner
from pixelserve.service.wiring import build_core
from tests.scoring.conftest import read_rows, score
from tests.scoring.test_score_errors import write_mixed_folder
from tests.service.grpc_support import grpc_server
from tests.service.models import CLASSIFIER, DENOISER, random_images, reference_session
from tests.service.rest_support import server_process


def test_server_engine_writes_the_rows_of_the_local_engine(model_repository, tmp_path) -> None:
    write_mixed_folder(tmp_path / "mixed")
    common = ["--model", CLASSIFIER, "--input", tmp_path / "mixed", "--shard-size", "5"]
    assert score(*common, "--model-repository", model_repository, "--output", tmp_path / "local.jsonl") == (
        EXIT_SOME_INPUTS_FAILED
    )
    with server_process(model_repository, tmp_path / "server.log") as server:
        code = score(*common, "--server", f"127.0.0.1:{server.grpc_port}", "--output", tmp_path / "remote.jsonl",
                     "--request-size", "2", "--concurrency", "3")  # fmt: skip
    assert code == EXIT_SOME_INPUTS_FAILED
    assert read_rows(tmp_path / "remote.jsonl") == read_rows(tmp_path / "local.jsonl")
    assert (tmp_path / "remote.errors.jsonl").read_text() == (tmp_path / "local.errors.jsonl").read_text()


def test_server_engine_denoises_into_pngs_like_the_local_engine(model_repository, tmp_path) -> None:
    np.savez(tmp_path / "data.npz", x_test=random_images(12, seed=2))
    common = ["--model", DENOISER, "--input", tmp_path / "data.npz"]
    assert score(*common, "--model-repository", model_repository, "--output", tmp_path / "local.jsonl") == 0
    with server_process(model_repository, tmp_path / "server.log") as server:
        assert score(*common, "--server", f"127.0.0.1:{server.grpc_port}", "--output", tmp_path / "remote.jsonl") == 0
    local, remote = read_rows(tmp_path / "local.jsonl"), read_rows(tmp_path / "remote.jsonl")
    assert [r["reconstruction_error"] for r in remote] == [r["reconstruction_error"] for r in local]
    for a, b in zip(local, remote, strict=True):
        assert a["output_path"] != b["output_path"]
        assert Path(a["output_path"]).read_bytes() == Path(b["output_path"]).read_bytes()


async def test_client_retries_a_full_queue_until_every_request_is_answered(settings, metrics) -> None:
    """A server that queues at most 8 images and holds each batch open 100 ms to fill it: of 12 concurrent requests
    of 8 images only one fits at a time, the others are refused with RESOURCE_EXHAUSTED and retried."""
    images = random_images(8, seed=4)
    (expected,) = reference_session(settings.model_repository, CLASSIFIER).run(["probabilities"], {"image": images})
    core = await build_core(
        settings.model_copy(
            update={"max_queue_size": 8, "max_batch_size": 64, "max_queue_delay_ms": 100.0, "batch_policy": "fill"}
        ),
        metrics,
    )
    try:
        async with grpc_server(core, settings, metrics) as address:
            client = RemoteRunner(address, concurrency=12, retry=Retry(retries=200, backoff_s=0.01, max_backoff_s=0.05))
            try:
                results = await asyncio.gather(
                    *(client.classify(ModelRef(CLASSIFIER), ImageInputs(tensor=images), top_k=1) for _ in range(12))
                )
            finally:
                await client.close()
    finally:
        await core.close()
    assert client.retried > 0
    for result in results:
        assert [item.top[0].index for item in result.items] == expected.argmax(axis=1).tolist()


async def test_client_does_not_retry_a_message_over_the_servers_size_limit(settings, metrics) -> None:
    """grpc's own RESOURCE_EXHAUSTED (no retry-after) cannot be cured by sending again: PayloadTooLarge, at once."""
    images = random_images(64, seed=5)
    limit = images.nbytes // 2
    core = await build_core(settings, metrics)
    try:
        async with grpc_server(core, settings, metrics, max_grpc_message_bytes=limit) as address:
            client = RemoteRunner(address, retry=Retry(retries=8, backoff_s=0.5))
            try:
                with pytest.raises(PayloadTooLarge, match="RESOURCE_EXHAUSTED"):
                    await client.classify(ModelRef(CLASSIFIER), ImageInputs(tensor=images))
                small = await client.classify(ModelRef(CLASSIFIER), ImageInputs(tensor=images[:2]))  # still served
            finally:
                await client.close()
    finally:
        await core.close()
    assert client.retried == 0
    assert len(small.items) == 2
