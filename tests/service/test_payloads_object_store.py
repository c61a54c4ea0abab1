"""The payload log writing to an object store, against moto's real S3 API server (tests/s3_support.py): shards
appear in the bucket whole, with the layout a folder gets; an unreachable store never slows a request, and the
staged shards arrive once it is back; a full backlog gives up its oldest shards as counted failures; a restart
uploads what the last run left staged; a URI the server cannot write stops start-up with exit 2."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pyarrow.parquet as pq
import pytest

from pixelserve.service.core.types import ModelRef
from pixelserve.service.grpc.gen.pixelserve.v1 import pixelserve_pb2 as pb
from pixelserve.service.grpc.gen.pixelserve.v1 import pixelserve_pb2_grpc as pb_grpc
from pixelserve.service.observe.payloads import PayloadLog, PayloadRecord
from pixelserve.service.observe.payloads.columns import columns
from tests.service.models import CLASSIFIER, encode_image, random_images

from ..s3_support import CREDENTIALS, S3Server, s3_server
from .rest_support import ROOT, ServerProcess, server_process

BUCKET, PREFIX = "logs", "fleet/payloads"
URI = f"s3://{BUCKET}/{PREFIX}"


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3Server]:
    with s3_server(tmp_path / "moto.log") as server:
        server.client.create_bucket(Bucket=BUCKET)
        yield server


@pytest.fixture
def s3_env(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """This process's botocore pointed at the store, for a log built in the test."""
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    return s3


def objects(s3: S3Server) -> dict[str, bytes]:
    """Every object under the prefix, by key below it."""
    listed = s3.client.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX + "/").get("Contents", [])
    return {
        item["Key"][len(PREFIX) + 1 :]: s3.client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
        for item in listed
    }


def rows_of(key: str, data: bytes) -> list[dict[str, Any]]:
    if key.endswith(".parquet"):
        return pq.read_table(io.BytesIO(data)).to_pylist()
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()]


def staged_files(folder: Path) -> list[Path]:
    """Shard files staged under `folder` (other libraries may leave their own files in a TMPDIR)."""
    return [p for p in folder.rglob("part-*") if p.is_file()]


def wait_for(check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def metric(server: ServerProcess, outcome: str) -> float:
    """pixelserve_payload_log_rows_total for the classifier and this outcome (0 before the first count)."""
    wanted = f'pixelserve_payload_log_rows_total{{model="{CLASSIFIER}",outcome="{outcome}"}}'
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith(wanted):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def record(seed: int) -> PayloadRecord:
    image = [encode_image(random_images(1, seed=seed)[0])]
    return PayloadRecord.failed("rest", "classify", image, ModelRef(CLASSIFIER), "bad")


@pytest.fixture
def logging_server(s3: S3Server, model_repository: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    """The real server logging every request to the bucket, one shard per 3 rows; its staging under tmp/."""
    (tmp_path / "tmp").mkdir()
    args = ("--payload-log-dir", URI, "--payload-log-rate", "1", "--payload-log-shard-rows", "3",
            "--drift-monitoring", "false")  # fmt: skip
    env = {**s3.env, "TMPDIR": str(tmp_path / "tmp")}
    with server_process(model_repository, tmp_path / "server.log", *args, env=env) as server:
        yield server


def test_a_server_logging_to_s3_leaves_every_request_in_the_bucket_after_sigterm(
    s3: S3Server, logging_server: ServerProcess, tmp_path: Path
) -> None:
    images = random_images(7, seed=11)
    answers: dict[str, str] = {}  # request id -> label
    with httpx.Client(base_url=logging_server.url, timeout=30) as http:
        for i, image in enumerate(images[:4]):
            r = http.post(f"/v1/models/{CLASSIFIER}:classify", content=encode_image(image),
                          headers={"X-Request-Id": f"rest-{i}"})  # fmt: skip
            assert r.status_code == 200, r.text
            answers[f"rest-{i}"] = r.json()["results"][0]["top"][0]["label"]
    with grpc.insecure_channel(f"127.0.0.1:{logging_server.grpc_port}") as channel:
        stub = pb_grpc.PixelServeStub(channel)
        for i, image in enumerate(images[4:]):
            request = pb.ClassifyRequest(model=CLASSIFIER)
            request.inputs.images.add(encoded=encode_image(image))
            reply = stub.Classify(request, metadata=(("x-request-id", f"grpc-{i}"),), timeout=30)
            answers[f"grpc-{i}"] = reply.results[0].top[0].label
    wait_for(lambda: len(objects(s3)) == 2)  # two full shards of 3 are uploaded as they are committed
    logging_server.terminate()
    assert logging_server.wait() == 0, logging_server.log()

    stored = objects(s3)
    assert len(stored) == 3, sorted(stored)  # the last row's shard went up at shutdown
    for key in stored:
        model, task, name = key.split("/")
        assert (model, task) == (CLASSIFIER, "classify") and name.startswith("part-") and name.endswith(".parquet")
    rows = [row for key in sorted(stored) for row in rows_of(key, stored[key])]
    assert all(tuple(row) == columns("classify") for row in rows)
    assert {row["request_id"]: row["label"] for row in rows} == answers  # each request once, as answered
    assert {row["protocol"] for row in rows} == {"rest", "grpc"}
    assert staged_files(tmp_path / "tmp") == []  # every local copy deleted once uploaded
    log = logging_server.log()
    assert CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in log and "cannot put shards" not in log


def test_requests_stay_fast_while_the_store_is_cut_and_staged_shards_arrive_after(
    s3: S3Server, logging_server: ServerProcess, tmp_path: Path
) -> None:
    s3.relay.cut()
    took = []
    with httpx.Client(base_url=logging_server.url, timeout=30) as http:
        for image in random_images(9, seed=12):
            started = time.perf_counter()
            r = http.post(f"/v1/models/{CLASSIFIER}:classify", content=encode_image(image))
            took.append(time.perf_counter() - started)
            assert r.status_code == 200, r.text
    assert max(took) < 1.0, took  # an upload attempt takes seconds against a dead store; no request waits on it
    wait_for(lambda: "cannot put shards" in logging_server.log())
    wait_for(lambda: len(staged_files(tmp_path / "tmp")) == 3)  # three committed shards of 3, kept on disk
    assert objects(s3) == {} and metric(logging_server, "written") == 0
    time.sleep(3)  # retries back off while the store stays away, and say nothing more
    assert logging_server.log().count("cannot put shards") == 1

    s3.relay.mend()
    wait_for(lambda: len(objects(s3)) == 3)  # the retry timer brings them, no new request needed
    assert sum(len(rows_of(key, data)) for key, data in objects(s3).items()) == 9
    wait_for(lambda: metric(logging_server, "written") == 9)
    assert metric(logging_server, "failed") == 0
    assert staged_files(tmp_path / "tmp") == []
    log = logging_server.log()
    assert "is reachable again" in log
    assert "Traceback" not in log and "Task exception" not in log  # one warning for the outage, no per-try noise
    logging_server.terminate()
    assert logging_server.wait() == 0


def test_a_full_backlog_gives_up_its_oldest_shards_as_failed_rows(
    s3_env: S3Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pixelserve.service.observe.payloads")
    staging = tmp_path / "staging"
    s3_env.relay.cut()
    log = PayloadLog(URI, fmt="jsonl", shard_rows=1, staging=staging, backlog=2, retry_s=0.2)
    try:
        for seed in range(5):
            log.offer(record(seed))
        assert not log.flush()  # committed, but not in the store
        assert (log.written, log.failed, log.staged) == (0, 3, 2)
        assert len(staged_files(staging)) == 2  # the given-up shards' files are gone too
        s3_env.relay.mend()
        assert log.flush()
        assert (log.written, log.failed, log.staged) == (2, 3, 0)
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert len(warnings) == 2, warnings  # the outage and the full backlog, each said once
        assert "3 given up meanwhile" in caplog.text
    finally:
        log.close()
    stored = objects(s3_env)
    names = sorted(key.rsplit("-", 1)[1] for key in stored)
    assert names == ["000004.jsonl", "000005.jsonl"]  # the newest two kept, the oldest given up
    assert staged_files(staging) == []


def test_shards_left_staged_at_close_are_uploaded_by_the_next_log_on_the_uri(s3_env: S3Server, tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    s3_env.relay.cut()
    first = PayloadLog(URI, fmt="parquet", shard_rows=2, staging=staging, retry_s=0.2)
    for seed in range(3):
        first.offer(record(seed))
    first.close(timeout=30)
    assert (first.written, first.failed) == (0, 0)
    assert len(staged_files(staging)) == 2  # both shards kept for the next start
    s3_env.relay.mend()
    with PayloadLog(URI, fmt="parquet", staging=staging) as second:
        assert second.flush()
        assert second.written == 3
    stored = objects(s3_env)
    assert sorted(len(rows_of(key, data)) for key, data in stored.items()) == [1, 2]
    assert staged_files(staging) == [] and not any(staging.iterdir())


@pytest.mark.parametrize(
    ("where", "says"),
    [
        ("foo://bucket/payloads", "no reader for foo:// URIs"),
        ("gs://user:hunter2@bucket/payloads", "payload log gs://bucket/payloads: gs:// needs its fsspec backend"),
    ],
)
def test_a_uri_the_server_cannot_write_stops_start_up_with_exit_2(
    model_repository: Path, where: str, says: str
) -> None:
    if where.startswith("gs://"):
        try:
            import gcsfs  # noqa: F401
        except ImportError:
            pass
        else:
            pytest.skip("gcsfs is installed here, so gs:// has its backend")
    command = [sys.executable, "-m", "pixelserve.service", "--model-repository", str(model_repository),
               "--http-port", "0", "--grpc-port", "0", "--payload-log-dir", where]  # fmt: skip
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert out.returncode == 2, out.stderr
    assert says in out.stderr
    assert "hunter2" not in out.stderr
