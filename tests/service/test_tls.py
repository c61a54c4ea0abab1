"""TLS and mutual TLS on both ports of a real server process: clients that trust the CA are served, everything
else is refused at the handshake with the server going on for everyone else, a renewed certificate is served
without a restart, and a stalled handshake is closed within the header deadline."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from pixelserve.service.grpc.gen.pixelserve.v1 import pixelserve_pb2 as pb
from pixelserve.service.grpc.gen.pixelserve.v1 import pixelserve_pb2_grpc as pb_grpc
from tests.service.models import CLASSIFIER, encode_image, random_images
from tests.service.rest_support import ROOT, server_process
from tests.service.tls_support import TlsServer, handshake_refused, presented_serial, tls_server
from tests.tls_support import Certificates, serial_of

PNG = encode_image(random_images(1, seed=3)[0])
REQUEST = pb.ClassifyRequest(model=CLASSIFIER, inputs=pb.ImageBatch(images=[pb.Image(encoded=PNG)]))


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates.create(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def server(repository_template: Path, certs: Certificates, tmp_path_factory) -> Iterator[TlsServer]:
    """TLS on both ports; a short header deadline, so a stalled handshake is closed quickly."""
    log = tmp_path_factory.mktemp("tls") / "server.log"
    with tls_server(repository_template, log, certs, certs.server, "--header-timeout-s", "1.5") as running:
        yield running


@pytest.fixture(scope="module")
def mutual(repository_template: Path, certs: Certificates, tmp_path_factory) -> Iterator[TlsServer]:
    log = tmp_path_factory.mktemp("mtls") / "server.log"
    with tls_server(repository_template, log, certs, certs.server, mutual=True) as running:
        yield running


def _classify_both(server: TlsServer) -> None:
    """A classification over HTTPS and one over gRPC-TLS, each answered."""
    with server.http() as client:
        response = client.post(f"/v1/models/{CLASSIFIER}:classify", content=PNG, headers={"content-type": "image/png"})
        assert response.status_code == 200, response.text
    with server.channel() as channel:
        answer = pb_grpc.PixelServeStub(channel).Classify(REQUEST)
        assert len(answer.results) == 1


def _no_server_errors(server: TlsServer) -> None:
    assert server.process.poll() is None, server.log()
    log = server.log()
    assert '"status":5' not in log and '"code":"INTERNAL"' not in log and "Traceback" not in log, log


def test_https_and_grpc_over_tls_serve_clients_that_trust_the_ca(server: TlsServer) -> None:
    _classify_both(server)
    assert "TLS on both" in server.log()
    with server.http() as client:  # the health probes are on the TLS port too
        assert client.get("/v2/health/ready").status_code == 200


def test_plaintext_to_the_tls_ports_is_refused_and_everyone_else_is_served(server: TlsServer) -> None:
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{server.http_port}/v2/health/live", timeout=5)
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel, pytest.raises(grpc.RpcError) as refused:
        pb_grpc.PixelServeStub(channel).Classify(REQUEST, timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    _classify_both(server)
    _no_server_errors(server)


def test_a_client_that_trusts_another_ca_refuses_the_server(server: TlsServer, certs: Certificates) -> None:
    for port, alpn in ((server.http_port, "http/1.1"), (server.grpc_port, "h2")):
        assert "CERTIFICATE_VERIFY_FAILED" in handshake_refused(port, certs.other_ca, alpn=alpn)
    _classify_both(server)


def test_an_expired_server_certificate_is_refused_by_clients(repository_template: Path, certs: Certificates,
                                                             tmp_path: Path) -> None:  # fmt: skip
    server = TlsServer(repository_template, tmp_path / "server.log", certs, certs.expired)
    try:
        deadline = time.monotonic() + 30
        while "start: HTTP" not in server.log() and time.monotonic() < deadline:
            assert server.process.poll() is None, server.log()
            time.sleep(0.05)
        for port, alpn in ((server.http_port, "http/1.1"), (server.grpc_port, "h2")):
            assert "certificate has expired" in handshake_refused(port, certs.ca, alpn=alpn)
    finally:
        server.close()


def test_a_stalled_handshake_is_closed_within_the_header_deadline(server: TlsServer) -> None:
    for port in (server.http_port, server.grpc_port):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as stalled:
            stalled.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # the first bytes of a ClientHello
            started = time.monotonic()
            with contextlib.suppress(ConnectionResetError):
                assert stalled.recv(1024) == b""
            assert time.monotonic() - started < 6.0  # the deadline is 1.5 s; gRPC checks it on a timer
    _classify_both(server)


def test_mutual_tls_refuses_clients_without_a_valid_certificate_on_both_ports(mutual: TlsServer,
                                                                              certs: Certificates) -> None:  # fmt: skip
    _classify_both(mutual)
    for port, alpn in ((mutual.http_port, "http/1.1"), (mutual.grpc_port, "h2")):
        assert handshake_refused(port, certs.ca, alpn=alpn, client=certs.client) == ""
        for client in (None, certs.stranger, certs.expired_client):
            assert handshake_refused(port, certs.ca, alpn=alpn, client=client) != "", (port, client)
    with mutual.channel(client_cert=False) as channel, pytest.raises(grpc.RpcError) as refused:
        pb_grpc.PixelServeStub(channel).Classify(REQUEST, timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    _classify_both(mutual)
    _no_server_errors(mutual)


def test_a_renewed_certificate_is_served_without_a_restart(repository_template: Path, certs: Certificates,
                                                           tmp_path: Path) -> None:  # fmt: skip
    live = (tmp_path / "tls.crt", tmp_path / "tls.key")
    for source, target in zip(certs.server, live, strict=True):
        shutil.copy(source, target)
    old, new = serial_of(certs.server[0].read_bytes()), serial_of(certs.renewed[0].read_bytes())
    with tls_server(repository_template, tmp_path / "server.log", certs, live) as server, server.http() as kept:
        assert kept.get("/v2/health/live").status_code == 200  # a keep-alive connection from before
        ports = ((server.http_port, "http/1.1"), (server.grpc_port, "h2"))
        assert [presented_serial(port, certs.ca, alpn=alpn) for port, alpn in ports] == [old, old]
        for source, target in zip(certs.renewed, live, strict=True):  # as a Secret update: replaced whole
            shutil.copy(source, target.with_suffix(".new"))
            os.replace(target.with_suffix(".new"), target)
        deadline = time.monotonic() + 10
        while [presented_serial(port, certs.ca, alpn=alpn) for port, alpn in ports] != [new, new]:
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.1)
        response = kept.post(f"/v1/models/{CLASSIFIER}:classify", content=PNG, headers={"content-type": "image/png"})
        assert response.status_code == 200  # the connection that was open goes on
        _classify_both(server)
        assert server.process.poll() is None and "TLS files re-read" in server.log()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tls-cert-file", "{cert}"], "tls_cert_file and tls_key_file go together"),
        (["--tls-client-ca-file", "{ca}"], "tls_client_ca_file needs tls_cert_file and tls_key_file"),
        (["--tls-cert-file", "{cert}", "--tls-key-file", "{other_key}"], "cannot be used"),
        (["--tls-cert-file", "{cert}", "--tls-key-file", "{missing}"], "TLS file cannot be read"),
    ],
)
def test_a_broken_tls_configuration_stops_start_up(model_repository: Path, certs: Certificates, args: list[str],
                                                   message: str) -> None:  # fmt: skip
    files = {"cert": certs.server[0], "ca": certs.ca, "other_key": certs.client[1], "missing": certs.folder / "no.key"}
    command = [sys.executable, "-m", "pixelserve.service", "--model-repository", str(model_repository),
               "--http-port", "0", "--grpc-port", "0", *(a.format(**files) for a in args)]  # fmt: skip
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr


def test_tls_to_a_plaintext_port_is_refused_and_the_server_goes_on(model_repository: Path, certs: Certificates,
                                                                   tmp_path: Path) -> None:  # fmt: skip
    with server_process(model_repository, tmp_path / "server.log", "--header-timeout-s", "2") as plain:
        for port, alpn in ((plain.http_port, "http/1.1"), (plain.grpc_port, "h2")):
            assert handshake_refused(port, certs.ca, alpn=alpn) != ""
        credentials = grpc.ssl_channel_credentials(certs.ca.read_bytes())
        with (
            grpc.secure_channel(f"localhost:{plain.grpc_port}", credentials) as channel,
            pytest.raises(grpc.RpcError) as refused,
        ):
            pb_grpc.PixelServeStub(channel).Classify(REQUEST, timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        response = httpx.post(f"{plain.url}/v1/models/{CLASSIFIER}:classify", content=PNG,
                              headers={"content-type": "image/png"})  # fmt: skip
        assert response.status_code == 200
        assert plain.process.poll() is None
        assert '"status":5' not in plain.log()


def _probe(port: int, **env: str) -> subprocess.CompletedProcess[str]:
    """`pixelserve probe` as the image's HEALTHCHECK runs it: only the server's own PIXELSERVE_* variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PIXELSERVE_")}
    variables = {"PIXELSERVE_HTTP_PORT": str(port), **{f"PIXELSERVE_{k.upper()}": v for k, v in env.items()}}
    return subprocess.run([sys.executable, "-m", "pixelserve", "probe"], cwd=ROOT, capture_output=True, text=True,
                          env={**clean, **variables}, timeout=60)  # fmt: skip


def test_the_probe_follows_the_server_onto_https_and_mutual_tls(server: TlsServer, mutual: TlsServer,
                                                                certs: Certificates) -> None:  # fmt: skip
    tls = {"tls_cert_file": str(certs.server[0]), "tls_key_file": str(certs.server[1])}
    assert _probe(server.http_port, **tls).returncode == 0
    assert _probe(server.http_port).returncode == 1  # plain HTTP to the TLS port: not healthy
    mtls = tls | {"tls_client_ca_file": str(certs.ca)}
    probe_cert = {"probe_cert_file": str(certs.client[0]), "probe_key_file": str(certs.client[1])}
    assert _probe(mutual.http_port, **mtls, **probe_cert).returncode == 0
    refused = _probe(mutual.http_port, **mtls, probe_cert_file=str(certs.stranger[0]),
                     probe_key_file=str(certs.stranger[1]))  # fmt: skip
    assert refused.returncode == 1, refused.stdout


def test_a_ca_removed_from_the_client_bundle_is_refused_without_a_restart(
    repository_template: Path, certs: Certificates, tmp_path: Path
) -> None:
    """Under mutual TLS the client CA bundle is rotated like the certificate: a CA taken out of it stops being
    trusted on both ports (each handshake gets a context built whole from the files, never one added to)."""
    bundle = tmp_path / "clients.pem"
    bundle.write_bytes(certs.ca.read_bytes() + certs.other_ca.read_bytes())
    log = tmp_path / "server.log"
    with tls_server(repository_template, log, certs, certs.server, mutual=True, client_ca=bundle) as server:
        ports = ((server.http_port, "http/1.1"), (server.grpc_port, "h2"))
        for port, alpn in ports:  # both CAs' clients are let in
            assert handshake_refused(port, certs.ca, alpn=alpn, client=certs.stranger) == ""
            assert handshake_refused(port, certs.ca, alpn=alpn, client=certs.client) == ""
        bundle.with_suffix(".new").write_bytes(certs.ca.read_bytes())
        os.replace(bundle.with_suffix(".new"), bundle)
        deadline = time.monotonic() + 10
        while any(handshake_refused(port, certs.ca, alpn=alpn, client=certs.stranger) == "" for port, alpn in ports):
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.1)
        for port, alpn in ports:
            assert handshake_refused(port, certs.ca, alpn=alpn, client=certs.client) == ""
        assert server.process.poll() is None
