"""The real stack: images built by Compose from this checkout, pixelserve and Prometheus started with
`docker compose up`, then REST and gRPC traffic from the host, checked against in-process onnxruntime, and
Prometheus's HTTP API seeing the requests. Runs on a Docker engine without a bridge (host networking, see
deploy/compose.host.yml), with a Debian base image built locally by deploy/ci/docker-up.sh."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from pixelserve import imaging
from pixelserve.modelspec import OUTPUT_PROBABILITIES, OUTPUT_RECONSTRUCTION, SPEC_FILE, ModelSpec
from pixelserve.service.grpc.gen.pixelserve.v1 import pixelserve_pb2 as pb
from pixelserve.service.grpc.gen.pixelserve.v1 import pixelserve_pb2_grpc as pb_grpc
from tests.deploy.support import DASHBOARD, ROOT, dashboard_queries
from tests.prerequisites import require
from tests.service.models import build_repository, encode_image, reference_session

pytestmark = pytest.mark.docker

PROJECT = "pixelserve-ci"
TAG = "ci"
HOST_NETWORK = ["-f", str(ROOT / "deploy" / "compose.host.yml")]
REST, GRPC, PROMETHEUS = 8000, 8001, 9090
HEALTHY_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class Models:
    repository: Path
    classifier: ModelSpec
    denoiser: ModelSpec


def served_specs(repository: Path) -> dict[str, ModelSpec]:
    """The highest version of every model (the default version policy)."""
    specs: dict[str, ModelSpec] = {}
    for path in sorted(repository.glob(f"*/*/{SPEC_FILE}"), key=lambda p: (p.parent.parent.name, int(p.parent.name))):
        with contextlib.suppress(Exception):
            spec = ModelSpec.load(path)
            specs[spec.name] = spec
    return specs


def pick(specs: dict[str, ModelSpec], task: str, preferred: str) -> ModelSpec | None:
    if preferred in specs and specs[preferred].task == task:
        return specs[preferred]
    return next((s for s in specs.values() if s.task == task), None)


@pytest.fixture(scope="module")
def models() -> Iterator[Models]:
    """The default repository when it holds a classifier and a denoiser (CI: mnist-classifier, mnist-denoiser);
    otherwise its models plus the tiny test models, in a directory the container's non-root user can read."""
    default = ROOT / "models"
    specs = served_specs(default)
    classifier, denoiser = pick(specs, "classify", "mnist-classifier"), pick(specs, "denoise", "mnist-denoiser")
    if classifier and denoiser:
        yield Models(default, classifier, denoiser)
        return
    scratch = Path(tempfile.mkdtemp(prefix="pixelserve-models-"))
    scratch.chmod(0o755)
    try:
        repository = build_repository(scratch / "models")
        for name in specs:
            shutil.copytree(default / name, repository / name)
        specs = served_specs(repository)
        classifier, denoiser = pick(specs, "classify", "mnist-classifier"), pick(specs, "denoise", "mnist-denoiser")
        assert classifier and denoiser
        yield Models(repository, classifier, denoiser)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture(scope="module")
def base_image() -> str:
    """deploy/ci/docker-up.sh: a running Docker engine and the local Debian base image (built once, cached)."""
    result = subprocess.run([str(ROOT / "deploy" / "ci" / "docker-up.sh")], capture_output=True, text=True)
    require(result.returncode == 0, f"no Docker engine: deploy/ci/docker-up.sh failed:\n{result.stderr[-3000:]}")
    return result.stdout.strip().splitlines()[-1]


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout.strip()


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def wait_healthy(container: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while (status := docker("inspect", "-f", "{{.State.Health.Status}}", container)) != "healthy":
        assert status in ("starting", ""), f"{container} is {status}:\n{docker('logs', '--tail', '50', container)}"
        assert time.monotonic() < deadline, f"{container} not healthy after {timeout_s}s"
        time.sleep(0.2)


def prometheus_query(promql: str) -> list[dict]:
    response = httpx.get(f"http://127.0.0.1:{PROMETHEUS}/api/v1/query", params={"query": promql}, timeout=5)
    body = response.json()
    assert body["status"] == "success", (promql, body)
    return body["data"]["result"]


def wait_for_total(promql: str, minimum: float, timeout_s: float = 60.0) -> float:
    deadline = time.monotonic() + timeout_s
    value = 0.0
    while True:
        with contextlib.suppress(httpx.TransportError):
            result = prometheus_query(promql)
            value = float(result[0]["value"][1]) if result else 0.0
            if value >= minimum:
                return value
        assert time.monotonic() < deadline, f"{promql} stayed at {value} < {minimum}"
        time.sleep(0.5)


def sample_images(spec: ModelSpec, count: int, seed: int) -> np.ndarray:
    p = spec.preprocessing
    return np.random.default_rng(seed).integers(0, 256, (count, p.height, p.width, p.channels), dtype=np.uint8)


def reference(models: Models, spec: ModelSpec, images: np.ndarray, output: str) -> np.ndarray:
    session = reference_session(models.repository, spec.name, spec.version)
    return session.run([output], {"image": images})[0]


def check_rest(models: Models) -> int:
    """Classify and denoise one PNG each over REST; returns the number of requests sent."""
    with httpx.Client(base_url=f"http://127.0.0.1:{REST}", timeout=30) as client:
        images = sample_images(models.classifier, 1, seed=1)
        response = client.post(  # noise, not a digit: compared with the graph on its raw pixels, no normalisation
            f"/v1/models/{models.classifier.name}:classify",
            content=encode_image(images[0]),
            headers={"Content-Type": "image/png"},
            params={"normalize": "none"},
        )
        assert response.status_code == 200, response.text
        expected = reference(models, models.classifier, images, OUTPUT_PROBABILITIES)[0]
        top = response.json()["results"][0]["top"][0]
        assert top["index"] == int(np.argmax(expected))
        assert top["probability"] == pytest.approx(float(expected.max()), rel=1e-4, abs=1e-6)

        images = sample_images(models.denoiser, 1, seed=2)
        response = client.post(
            f"/v1/models/{models.denoiser.name}:denoise",
            content=encode_image(images[0]),
            headers={"Content-Type": "image/png", "Accept": "image/png"},
        )
        assert response.status_code == 200 and response.headers["content-type"] == "image/png", response.text
        assert_png_matches(response.content, reference(models, models.denoiser, images, OUTPUT_RECONSTRUCTION)[0])
    return 2


def assert_png_matches(png: bytes, reconstruction: np.ndarray) -> None:
    pixels = np.asarray(Image.open(io.BytesIO(png))).astype(np.int16).reshape(reconstruction.shape)
    assert np.abs(pixels - np.rint(np.clip(reconstruction, 0, 1) * 255)).max() <= 1


def check_grpc(models: Models) -> int:
    """gRPC health (what the Kubernetes startup probe asks), then classify and denoise a batch of two."""
    with grpc.insecure_channel(f"127.0.0.1:{GRPC}") as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stub = pb_grpc.PixelServeStub(channel)

        images = sample_images(models.classifier, 2, seed=3)
        batch = pb.ImageBatch(images=[pb.Image(encoded=encode_image(i)) for i in images], normalize="none")
        response = stub.Classify(pb.ClassifyRequest(model=models.classifier.name, inputs=batch, top_k=1), timeout=30)
        expected = reference(models, models.classifier, images, OUTPUT_PROBABILITIES)
        assert [r.top[0].index for r in response.results] == np.argmax(expected, axis=1).tolist()

        images = sample_images(models.denoiser, 2, seed=4)
        batch = pb.ImageBatch(images=[pb.Image(encoded=encode_image(i)) for i in images])
        response = stub.Denoise(pb.DenoiseRequest(model=models.denoiser.name, inputs=batch), timeout=30)
        expected = reference(models, models.denoiser, images, OUTPUT_RECONSTRUCTION)
        for result, reconstruction in zip(response.results, expected, strict=True):
            assert_png_matches(result.png, reconstruction)
    return 2


def check_batch_scoring(models: Models, run_score: Callable[[dict[str, str]], None]) -> None:
    """The compose `score` job (profile batch) classifies a folder of PNGs with the same image."""
    images = sample_images(models.classifier, 3, seed=5)
    pre = models.classifier.preprocessing  # the job applies the model's declared preprocessing, as the server does
    prepared = np.stack([
        imaging.prepare(encode_image(i), color_mode=pre.color_mode, height=pre.height, width=pre.width,
                        resize=pre.resize, normalize=pre.normalize, max_pixels=4096 * 4096)
        for i in images
    ])  # fmt: skip
    expected = np.argmax(reference(models, models.classifier, prepared, OUTPUT_PROBABILITIES), axis=1)
    data = Path(tempfile.mkdtemp(prefix="pixelserve-score-"))
    try:
        data.chmod(0o777)  # the container's non-root user writes the output here
        (data / "input").mkdir()
        for index, image in enumerate(images):
            (data / "input" / f"{index}.png").write_bytes(encode_image(image))
        run_score({"SCORE_DATA": str(data), "SCORE_MODEL": models.classifier.name, "SCORE_OUTPUT": "scores.jsonl"})
        rows = [json.loads(line) for line in (data / "scores.jsonl").read_text().splitlines()]
        predicted = {Path(row["path"]).stem: row["top_indices"][0] for row in rows if row["status"] == "ok"}
        assert predicted == {str(i): int(e) for i, e in enumerate(expected)}, rows
    finally:
        shutil.rmtree(data, ignore_errors=True)


def check_dashboard_queries() -> None:
    """Every dashboard query is valid PromQL on the real Prometheus, and the request-rate panel has data."""
    dashboard = json.loads(DASHBOARD.read_text())
    for query in dashboard_queries(dashboard):
        if query.startswith("label_values("):
            continue
        promql = query.replace("$__rate_interval", "1m").replace("$model", ".*").replace("$instance", ".*")
        prometheus_query(promql)
    rate = dashboard["panels"][0]["targets"][0]["expr"].replace("$__rate_interval", "1m")
    wait = time.monotonic() + 30
    while not prometheus_query(rate.replace("$model", ".*").replace("$instance", ".*")):
        assert time.monotonic() < wait, f"no data for {rate}"
        time.sleep(1)


def test_compose_stack_builds_serves_rest_and_grpc_and_is_scraped(compose, base_image, models, capsys) -> None:
    busy = [port for port in (REST, GRPC, PROMETHEUS) if not port_is_free(port)]
    assert not busy, f"host ports {busy} are taken; the host-network stack needs them"
    env = {
        **os.environ,
        "COMPOSE_PROJECT_NAME": PROJECT,
        "BASE_IMAGE": base_image,
        "PROMETHEUS_BASE_IMAGE": base_image,
        "PIXELSERVE_TAG": TAG,
        "PIXELSERVE_MODELS": str(models.repository),
    }

    def run(*args: str, extra_env: dict[str, str] | None = None) -> None:
        subprocess.run([*compose, *HOST_NETWORK, *args], check=True, env={**env, **(extra_env or {})}, cwd=ROOT)

    started = time.monotonic()
    run("build", "pixelserve", "prometheus")
    build_s = time.monotonic() - started
    try:
        started = time.monotonic()
        run("up", "-d", "pixelserve", "prometheus")
        container = docker("ps", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}",
                           "--filter", "label=com.docker.compose.service=pixelserve")  # fmt: skip
        wait_healthy(container, HEALTHY_TIMEOUT_S)
        healthy_s = time.monotonic() - started
        scraper = docker("ps", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}",
                         "--filter", "label=com.docker.compose.service=prometheus")  # fmt: skip
        wait_healthy(scraper, HEALTHY_TIMEOUT_S)  # its own health check (GET /-/ready) passes too

        wait_for_total('up{job="pixelserve"}', 1)
        before = wait_for_total("sum(pixelserve_requests_total) or vector(0)", 0)
        sent = check_rest(models) + check_grpc(models)
        after = wait_for_total("sum(pixelserve_requests_total)", before + sent)
        ok = prometheus_query('sum by (protocol) (pixelserve_requests_total{code="OK"})')
        assert {series["metric"]["protocol"] for series in ok} == {"rest", "grpc"}
        check_dashboard_queries()
        check_batch_scoring(
            models, lambda score_env: run("--profile", "batch", "run", "--rm", "score", extra_env=score_env)
        )
    finally:
        run("down", "-v", "--remove-orphans")
    assert docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}") == ""
    assert docker("ps", "-q") == ""
    assert docker("volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}") == ""

    size_mb = int(docker("image", "inspect", "-f", "{{.Size}}", f"pixelserve:{TAG}")) / 1e6
    with capsys.disabled():
        print(
            f"\ndocker stack: build {build_s:.1f} s, pixelserve:{TAG} image {size_mb:.0f} MB, "
            f"up -> healthy {healthy_s:.1f} s, models {models.classifier.name} + {models.denoiser.name}, "
            f"requests_total {before:.0f} -> {after:.0f}"
        )
    # 390 MB with [serve] alone; both OTLP exporters (and requests) add about 10, [s3] (botocore) about 30
    assert size_mb <= 450
