"""The payload log over real core results: exactly the rows offered, outputs equal to the results, rotation,
drops that never block, JSON lines without pyarrow, and sampling by rate, model and task."""

from __future__ import annotations

import base64
import io
import json
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from pixelserve.service.core.types import ImageInputs, ModelRef
from pixelserve.service.observe.payloads import PayloadLog, PayloadLogError, PayloadRecord
from pixelserve.service.observe.payloads.columns import LOG_COLUMNS, columns
from pixelserve.service.observe.payloads.shards import (
    ShardFile,
    ShardFormat,
    open_shard,
    read_rows,
    safe_name,
    shard_files,
)
from pixelserve.service.scoring import sinks
from pixelserve.service.settings import Settings
from tests.service.models import AUTOENCODER, CLASSIFIER, DENOISER, LABELS, encode_image, random_images


def pixels(data: bytes) -> np.ndarray:
    array = np.asarray(Image.open(io.BytesIO(data)))
    return array[..., None] if array.ndim == 2 else array


def logged(directory: Path) -> dict[str, list[dict[str, Any]]]:
    """Rows by task folder, every committed shard read back."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for path in shard_files(directory):
        rows.setdefault(path.parent.name, []).extend(read_rows(path))
    return rows


def one_image(seed: int) -> list[bytes]:
    return [encode_image(random_images(1, seed=seed)[0])]


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
async def test_log_holds_exactly_the_rows_offered_with_the_results_outputs(core, tmp_path, fmt) -> None:
    batch = random_images(3, seed=1)
    encoded = [encode_image(image) for image in batch]
    log = PayloadLog(tmp_path / "log", fmt=fmt)
    classified = await core.classify(ModelRef(CLASSIFIER), ImageInputs(encoded=encoded), top_k=2)
    log.offer(
        PayloadRecord.answered("rest", "classify", encoded, classified, request_id="client-7", trace_id="ab" * 16)
    )
    reconstructed = await core.reconstruct(ModelRef(AUTOENCODER), ImageInputs(tensor=batch))
    log.offer(PayloadRecord.answered("grpc", "reconstruct", batch, reconstructed))
    denoised = await core.denoise(ModelRef(DENOISER), ImageInputs(tensor=batch[..., 0]))  # NHW, as V2 allows
    log.offer(PayloadRecord.answered("grpc", "denoise", batch[..., 0], denoised))
    encoded_latent = await core.encode(ModelRef(AUTOENCODER), ImageInputs(encoded=encoded))
    log.offer(PayloadRecord.answered("rest", "encode", encoded, encoded_latent))
    log.close()

    rows = logged(tmp_path / "log" / CLASSIFIER) | logged(tmp_path / "log" / AUTOENCODER)
    rows |= logged(tmp_path / "log" / DENOISER)
    assert {task: len(r) for task, r in rows.items()} == {"classify": 3, "reconstruct": 3, "denoise": 3, "encode": 3}
    assert (log.written, log.dropped, log.failed) == (12, 0, 0)
    for task, task_rows in rows.items():
        assert (
            tuple(task_rows[0]) == sinks.columns(task) + (("output_image",) if task == "denoise" else ()) + LOG_COLUMNS
        )
        assert all(row["status"] == "ok" and row["version"] == 1 for row in task_rows)
    for row, item, data in zip(rows["classify"], classified.items, encoded, strict=True):
        assert row["image"] == data  # the file as received
        assert (row["request_id"], row["trace_id"], row["protocol"]) == ("client-7", "ab" * 16, "rest")
        assert (row["label"], row["probability"]) == (item.top[0].label, item.top[0].probability)
        assert row["top_labels"] == [s.label for s in item.top] and len(row["top_labels"]) == 2
        assert row["top_probabilities"] == [s.probability for s in item.top]
        assert (row["ood_score"], row["is_ood"]) == (item.ood_score, item.is_ood)
        assert (row["resize"], row["normalize"]) == ("stretch", "none")
    assert len({row["id"] for task_rows in rows.values() for row in task_rows}) == 12
    for row, item, image in zip(rows["reconstruct"], reconstructed.items, batch, strict=True):
        np.testing.assert_array_equal(pixels(row["image"]), image)  # a tensor, logged as PNG
        assert (row["reconstruction_error"], row["is_anomaly"]) == (item.error, item.is_anomaly)
        assert row["anomaly_threshold"] == item.threshold and row["resize"] is None
        assert uuid.UUID(row["request_id"]).version == 4 and row["id"].startswith(row["request_id"] + "-")
        assert datetime.fromisoformat(row["time"]).utcoffset() == timedelta(0)
    for row, item, image in zip(rows["denoise"], denoised.items, batch, strict=True):
        np.testing.assert_array_equal(pixels(row["image"]), image)
        expected = np.rint(np.clip(item.image, 0, 1) * 255).astype(np.uint8)
        np.testing.assert_array_equal(pixels(row["output_image"]), expected)
        assert row["reconstruction_error"] == item.error and row["output_path"] is None
    for row, item in zip(rows["encode"], encoded_latent.items, strict=True):
        np.testing.assert_allclose(row["latent"], item.latent, rtol=0, atol=0)


async def test_raw_inference_of_a_classifier_logs_the_classification_columns(core, tmp_path) -> None:
    batch = random_images(4, seed=2)
    log = PayloadLog(tmp_path / "log", fmt="jsonl")
    raw = await core.infer(ModelRef(CLASSIFIER), ImageInputs(tensor=batch.astype(np.float32)))
    log.offer(PayloadRecord.answered("rest-v2", "infer", batch.astype(np.float32), raw))
    log.close()

    classified = await core.classify(ModelRef(CLASSIFIER), ImageInputs(tensor=batch))
    rows = logged(tmp_path / "log")["infer"]
    assert tuple(rows[0]) == columns("infer")
    for row, item, image in zip(rows, classified.items, batch, strict=True):
        assert row["top_labels"] == [s.label for s in item.top] and sorted(row["top_labels"]) == sorted(LABELS)
        np.testing.assert_allclose(row["top_probabilities"], [s.probability for s in item.top], rtol=1e-6)
        assert json.loads(row["outputs"])["probabilities"]["shape"] == [len(LABELS)]
        np.testing.assert_array_equal(pixels(row["image"]), image)


async def test_failed_requests_become_error_rows(core, tmp_path) -> None:
    log = PayloadLog(tmp_path / "log", fmt="jsonl")
    log.offer(PayloadRecord.failed("rest", "classify", one_image(0) * 2, ModelRef("../../etc", 3), "no such model"))
    log.close()
    (path,) = shard_files(tmp_path / "log")
    assert path.parent.parent.name == safe_name("../../etc") and path.is_relative_to(tmp_path / "log")
    rows = list(read_rows(path))
    assert [(r["status"], r["error"], r["model"], r["version"]) for r in rows] == [
        ("error", "no such model", "../../etc", 3)
    ] * 2


def test_shards_rotate_at_shard_rows_and_on_close(tmp_path) -> None:
    log = PayloadLog(tmp_path, fmt="parquet", shard_rows=4)
    for seed in range(10):
        log.offer(PayloadRecord.failed("rest", "classify", one_image(seed), ModelRef(CLASSIFIER), "bad"))
    assert log.flush()
    paths = shard_files(tmp_path)
    assert [len(list(read_rows(p))) for p in paths] == [4, 4, 2]
    assert [p.name.split("-")[-1] for p in paths] == ["000001.parquet", "000002.parquet", "000003.parquet"]
    log.offer(PayloadRecord.failed("rest", "classify", one_image(10), ModelRef(CLASSIFIER), "bad"))
    log.close()
    assert len(shard_files(tmp_path)) == 4 and log.written == 11
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]  # no temp file left behind


def test_a_shard_is_committed_after_shard_s_without_a_flush(tmp_path) -> None:
    log = PayloadLog(tmp_path, fmt="jsonl", shard_s=0.2)
    log.offer(PayloadRecord.failed("rest", "classify", one_image(0), ModelRef(CLASSIFIER), "bad"))
    deadline = time.monotonic() + 10
    while not shard_files(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(shard_files(tmp_path)) == 1 and log.written == 1
    log.close()


class Wrapped:
    """The real shard file behind a disk the test controls."""

    def __init__(self, inner: ShardFile) -> None:
        self.inner, self.path = inner, inner.path

    @property
    def rows(self) -> int:
        return self.inner.rows

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        self.inner.append(rows)

    def commit(self) -> None:
        self.inner.commit()

    def abort(self) -> None:
        self.inner.abort()


class StalledDisk(Wrapped):
    """Its first append waits until the test lets it go."""

    def __init__(self, inner: ShardFile, entered: threading.Event, release: threading.Event) -> None:
        super().__init__(inner)
        self.entered, self.release = entered, release

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        self.entered.set()
        self.release.wait(30)
        super().append(rows)


class FullDisk(Wrapped):
    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        raise OSError(28, "No space left on device")


def test_a_full_buffer_drops_and_counts_while_offer_returns_at_once(tmp_path) -> None:
    entered, release = threading.Event(), threading.Event()
    counted: list[tuple[str, str, int]] = []

    def held(path: Path, fmt: ShardFormat, task: Any) -> ShardFile:
        return StalledDisk(open_shard(path, fmt, task), entered, release)

    log = PayloadLog(tmp_path, fmt="jsonl", buffer=4, opener=held, on_count=lambda *event: counted.append(event))
    record = PayloadRecord.failed("rest", "classify", one_image(0) * 2, ModelRef(CLASSIFIER), "bad")
    assert log.offer(record)
    assert entered.wait(10)  # the writer holds the first record and is stuck in the disk
    assert all(log.offer(record) for _ in range(4))  # the buffer fills
    took = []
    for _ in range(200):
        started = time.perf_counter()
        accepted = log.offer(record)
        took.append(time.perf_counter() - started)
        assert not accepted
    took.sort()
    assert took[int(len(took) * 0.95)] < 1e-3 and took[-1] < 0.05, took[-5:]
    assert (log.dropped, log.written, log.queued) == (400, 0, 4)
    assert counted == [("dropped", CLASSIFIER, 2)] * 200
    release.set()
    log.close()
    assert (log.written, log.dropped, log.failed) == (10, 400, 0)
    assert not log.offer(record) and log.dropped == 402  # closed: dropped, never queued


def test_write_errors_are_counted_and_the_next_shard_starts_fresh(tmp_path) -> None:
    opened = []

    def failing_first(path: Path, fmt: ShardFormat, task: Any) -> ShardFile:
        opened.append(path)
        shard = open_shard(path, fmt, task)
        return FullDisk(shard) if len(opened) == 1 else shard

    log = PayloadLog(tmp_path, fmt="jsonl", opener=failing_first)
    for seed in range(3):
        log.offer(PayloadRecord.failed("rest", "classify", one_image(seed), ModelRef(CLASSIFIER), "bad"))
    log.close()
    assert (log.failed, log.written) == (1, 2)
    assert [len(list(read_rows(p))) for p in shard_files(tmp_path)] == [2]
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]


def test_jsonl_needs_no_pyarrow_and_holds_images_in_base64(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if the [batch] extra were not installed
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(PayloadLogError, match=r"pip install 'pixelserve\[batch\]'.*--payload-log-format jsonl"):
        PayloadLog(tmp_path / "parquet", fmt="parquet")
    images = one_image(3)
    with PayloadLog(tmp_path / "jsonl", fmt="jsonl") as log:
        log.offer(PayloadRecord.failed("rest", "classify", images, ModelRef(CLASSIFIER), "bad"))
    (path,) = shard_files(tmp_path / "jsonl")
    raw = json.loads(path.read_text())
    assert raw["image"] == base64.b64encode(images[0]).decode()
    assert next(read_rows(path))["image"] == images[0]


def test_sampling_follows_rate_models_and_tasks(tmp_path) -> None:
    def drawn(log: PayloadLog, n: int = 2000) -> list[bool]:
        return [log.sample(CLASSIFIER, "classify") for _ in range(n)]

    with PayloadLog(tmp_path, fmt="jsonl", rate=0.0) as never, PayloadLog(tmp_path, fmt="jsonl") as always:
        assert not any(drawn(never)) and all(drawn(always))
    with (
        PayloadLog(tmp_path, fmt="jsonl", rate=0.25, seed=7) as a,
        PayloadLog(tmp_path, fmt="jsonl", rate=0.25, seed=7) as b,
    ):
        first = drawn(a)
        assert first == drawn(b) and 0.2 < sum(first) / len(first) < 0.3
    with PayloadLog(tmp_path, fmt="jsonl", models=[CLASSIFIER], tasks=["classify", "infer"]) as chosen:
        assert chosen.sample(CLASSIFIER, "classify") and chosen.sample(CLASSIFIER, "infer")
        assert not chosen.sample(AUTOENCODER, "classify") and not chosen.sample(CLASSIFIER, "encode")


def test_settings_build_the_log_or_none(tmp_path, monkeypatch) -> None:
    assert PayloadLog.from_settings(Settings()) is None
    monkeypatch.setenv("PIXELSERVE_PAYLOAD_LOG_DIR", str(tmp_path / "log"))
    monkeypatch.setenv("PIXELSERVE_PAYLOAD_LOG_TASKS", '["classify", "infer"]')
    monkeypatch.setenv("PIXELSERVE_PAYLOAD_LOG_FORMAT", "jsonl")
    monkeypatch.setenv("PIXELSERVE_PAYLOAD_LOG_RATE", "0.5")
    log = PayloadLog.from_settings(Settings(), seed=1)
    assert log is not None
    with log:
        assert (log.directory, log.tasks, log.rate, log.format) == (
            tmp_path / "log",
            {"classify", "infer"},
            0.5,
            "jsonl",
        )
    monkeypatch.setenv("PIXELSERVE_PAYLOAD_LOG_RATE", "1.5")
    with pytest.raises(ValueError, match="payload_log_rate"):
        Settings()
