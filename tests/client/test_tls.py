"""TLS: https:// and grpcs:// with the client's CA file, and mutual TLS with its certificate and key, against the
real REST app and gRPC server behind TLS (the server itself serves plain text; TLS usually ends at a proxy, which
these stand in for). Certificates come from the openssl command."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
import uvicorn

from pixelserve.client import AsyncClient, Client, Retry, Unavailable
from pixelserve.service.grpc.server import create_grpc_server
from pixelserve.service.rest.app import create_app
from tests import prerequisites
from tests.service.models import CLASSIFIER, random_images
from tests.service.rest_support import _TestServer

SAN = "subjectAltName=DNS:localhost,IP:127.0.0.1"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _issue(name: str, ca: Path, cwd: Path, usage: str) -> None:
    """An EC key and a certificate for it, signed by the test CA."""
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=cwd)  # fmt: skip
    (cwd / f"{name}.ext").write_text(f"{SAN}\nextendedKeyUsage={usage}\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", ca.name, "-CAkey", "ca.key", "-CAcreateserial",
             "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=cwd)  # fmt: skip


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ca.pem, server.pem/.key and client.pem/.key; plus other-ca.pem, a CA that signed none of them."""
    prerequisites.require(shutil.which("openssl") is not None, "the openssl command is not installed")
    folder = tmp_path_factory.mktemp("certs")
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
                 f"{ca}.key", "-out", f"{ca}.pem", "-days", "2", "-subj", f"/CN={ca}", cwd=folder)  # fmt: skip
    _issue("server", folder / "ca.pem", folder, "serverAuth")
    _issue("client", folder / "ca.pem", folder, "clientAuth")
    return folder


@asynccontextmanager
async def tls_servers(core, settings, metrics, certs: Path, *, mutual: bool) -> AsyncIterator[tuple[str, str]]:
    """The REST app on https:// and the gRPC server on grpcs://, both on the test's loop."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    options = {"ssl_certfile": str(certs / "server.pem"), "ssl_keyfile": str(certs / "server.key")}
    if mutual:
        options |= {"ssl_ca_certs": str(certs / "ca.pem"), "ssl_cert_reqs": ssl.CERT_REQUIRED}
    http = _TestServer(uvicorn.Config(create_app(core, settings, metrics), log_level="warning", **options))
    task = asyncio.create_task(http.serve(sockets=[sock]))
    credentials = grpc.ssl_server_credentials(
        [((certs / "server.key").read_bytes(), (certs / "server.pem").read_bytes())],
        root_certificates=(certs / "ca.pem").read_bytes() if mutual else None,
        require_client_auth=mutual,
    )
    server = create_grpc_server(core, settings.model_copy(update={"grpc_port": 0}), metrics)
    grpc_port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    while not http.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.01)
    try:
        yield f"https://localhost:{sock.getsockname()[1]}", f"grpcs://localhost:{grpc_port}"
    finally:
        http.should_exit = True
        await task
        await server.stop(None)
        sock.close()


async def test_tls_with_the_clients_ca_file(core, settings, metrics, certs: Path) -> None:
    async with tls_servers(core, settings, metrics, certs, mutual=False) as urls:
        for url in urls:
            async with AsyncClient(url, ca_file=certs / "ca.pem") as client:
                assert len(await client.classify(CLASSIFIER, random_images(2))) == 2
            with Client(url, ca_file=certs / "ca.pem") as sync_client:
                health = await asyncio.to_thread(sync_client.health)
                assert health.live and health.ready
            async with AsyncClient(url, ca_file=certs / "other-ca.pem", retry=Retry(retries=0)) as stranger:
                with pytest.raises(Unavailable):  # the server's certificate is not signed by this CA
                    await stranger.classify(CLASSIFIER, random_images(1))


async def test_mutual_tls_with_the_clients_certificate(core, settings, metrics, certs: Path) -> None:
    async with tls_servers(core, settings, metrics, certs, mutual=True) as urls:
        for url in urls:
            async with AsyncClient(url, ca_file=certs / "ca.pem", cert_file=certs / "client.pem",
                                   key_file=certs / "client.key") as client:  # fmt: skip
                assert len(await client.classify(CLASSIFIER, random_images(1))) == 1
            async with AsyncClient(url, ca_file=certs / "ca.pem", retry=Retry(retries=0)) as anonymous:
                with pytest.raises(Unavailable):  # no client certificate: the handshake is refused
                    await anonymous.classify(CLASSIFIER, random_images(1))
