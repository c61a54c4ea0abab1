"""The whole server process (`python -m pixelserve.service`: REST + gRPC on one loop) under signals and flags."""

from __future__ import annotations

import io
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from pixelserve.service.process.cli import main
from tests.service.models import CLASSIFIER, encode_image, random_images
from tests.service.rest_support import server_process


def big_jpegs(count: int, side: int = 2048) -> list[tuple[str, tuple[str, bytes, str]]]:
    """Large smooth JPEGs: small on the wire, ~20 ms each to decode and resize, so a batch stays in flight."""
    gradient = np.tile(np.linspace(0, 255, side).astype(np.uint8), (side, 1))
    buffer = io.BytesIO()
    Image.fromarray(gradient).save(buffer, format="JPEG", quality=90)
    return [("files", (f"{i}.jpg", buffer.getvalue(), "image/jpeg")) for i in range(count)]


def test_help_and_bad_flags_exit_codes(capsys) -> None:
    assert main(["--help"]) == 0
    assert "--max-batch-size" in capsys.readouterr().out
    assert main(["--no-such-flag"]) == 2
    assert main(["--http-port", "not-a-port"]) == 2
    assert main(["--log-level", "chatty"]) == 2


def test_flags_win_over_environment_and_environment_over_defaults(model_repository, tmp_path) -> None:
    env = {"PIXELSERVE_HTTP_PORT": "1", "PIXELSERVE_MAX_BATCH_SIZE": "4"}  # port 1 would fail if it were used
    with server_process(model_repository, tmp_path / "server.log", env=env) as server:
        config = httpx.get(f"{server.url}/v2/models/{CLASSIFIER}/config").json()
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert config["max_batch_size"] == 4
    assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_the_gil_switch_interval_is_set_only_when_asked(model_repository, tmp_path) -> None:
    with server_process(model_repository, tmp_path / "set.log", "--switch-interval-ms", "0.5") as server:
        assert "GIL switch interval 0.50 ms" in server.log()
    with server_process(model_repository, tmp_path / "default.log") as server:
        assert "GIL switch interval" not in server.log()  # Python's own 5 ms


@pytest.mark.slow
def test_sigterm_under_load_drains_without_losing_an_accepted_request(model_repository, tmp_path: Path) -> None:
    with server_process(model_repository, tmp_path / "server.log", "--drain-grace-s", "10") as server:
        png = encode_image(random_images(1)[0])
        done = threading.Event()
        lock = threading.Lock()
        answers: list[tuple[float, int]] = []  # (time, HTTP status) of every response received
        refused: list[tuple[float, str]] = []  # requests that got no response at all (listener closed)
        readiness: list[int] = []

        def load() -> None:
            with httpx.Client(base_url=server.url, timeout=20) as client:
                while not done.is_set():
                    try:
                        status = client.post(f"/v1/models/{CLASSIFIER}:classify", content=png).status_code
                        with lock:
                            answers.append((time.monotonic(), status))
                    except httpx.TransportError as exc:
                        with lock:
                            refused.append((time.monotonic(), type(exc).__name__))
                        time.sleep(0.01)

        def probe() -> None:
            with httpx.Client(base_url=server.url, timeout=5) as client:
                while not done.is_set():
                    try:
                        readiness.append(client.get("/v2/health/ready").status_code)
                    except httpx.TransportError:
                        return
                    time.sleep(0.01)

        slow: dict[str, float] = {}
        files = big_jpegs(64)  # made before the clock starts: on busy cores making them takes a while

        def slow_batch() -> None:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                response = client.post(f"/v1/models/{CLASSIFIER}:classify", files=files)
            slow.update(status=response.status_code, results=len(response.json()["results"]), at=time.monotonic())

        workers = [threading.Thread(target=load) for _ in range(4)]
        for worker in workers:
            worker.start()
        time.sleep(0.5)
        batch = threading.Thread(target=slow_batch)
        batch.start()
        time.sleep(0.3)  # the batch is decoding in the core now: in flight for about a second more
        signalled_at = time.monotonic()
        server.terminate()
        prober = threading.Thread(target=probe)
        prober.start()
        exit_code = server.wait(timeout_s=30)
        done.set()
        for thread in (*workers, batch, prober):
            thread.join(timeout=30)
        log = server.log()

    assert exit_code == 0, log
    assert slow == {"status": 200, "results": 64, "at": slow["at"]}, slow
    assert answers and all(status == 200 for _, status in answers), Counter(status for _, status in answers)
    assert any(at > signalled_at for at, _ in answers), "nothing was served during the drain"
    assert 503 in readiness, readiness
    # Requests only go unanswered once the listener closed, which is after the in-flight batch finished.
    assert all(at >= slow["at"] for at, _ in refused), (refused, slow)
    for phase in ("shutdown: SIGTERM", "drain: readiness off", "stop: closing listeners", "closed: core released"):
        assert phase in log, log
