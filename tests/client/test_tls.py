"""TLS: https:// and grpcs:// with the client's CA file, and mutual TLS with its certificate and key, against the
real REST app and gRPC server with the server's own TLS (security/tls.py) on the test's loop. Certificates come
from tests/tls_support.py."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import uvicorn

from pixelserve.client import AsyncClient, Client, Retry, Unavailable
from pixelserve.service.grpc.server import create_grpc_server
from pixelserve.service.rest.app import create_app
from pixelserve.service.security.tls import ServerTls
from tests.service.models import CLASSIFIER, random_images
from tests.service.rest_support import _TestServer
from tests.tls_support import Certificates


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates.create(tmp_path_factory.mktemp("certs"))


@asynccontextmanager
async def tls_servers(core, settings, metrics, certs: Certificates, *, mutual: bool) -> AsyncIterator[tuple[str, str]]:
    """The REST app on https:// and the gRPC server on grpcs://, both on the test's loop."""
    tls = ServerTls(*certs.server, certs.ca if mutual else None)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(create_app(core, settings, metrics), log_level="warning")
    config.load()
    config.ssl = tls.ssl_context()
    http = _TestServer(config)
    task = asyncio.create_task(http.serve(sockets=[sock]))
    server = create_grpc_server(core, settings.model_copy(update={"grpc_port": 0}), metrics)
    grpc_port = server.add_secure_port("127.0.0.1:0", tls.grpc_credentials())
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


async def test_tls_with_the_clients_ca_file(core, settings, metrics, certs: Certificates) -> None:
    async with tls_servers(core, settings, metrics, certs, mutual=False) as urls:
        for url in urls:
            async with AsyncClient(url, ca_file=certs.ca) as client:
                assert len(await client.classify(CLASSIFIER, random_images(2))) == 2
            with Client(url, ca_file=certs.ca) as sync_client:
                health = await asyncio.to_thread(sync_client.health)
                assert health.live and health.ready
            async with AsyncClient(url, ca_file=certs.other_ca, retry=Retry(retries=0)) as stranger:
                with pytest.raises(Unavailable):  # the server's certificate is not signed by this CA
                    await stranger.classify(CLASSIFIER, random_images(1))


async def test_mutual_tls_with_the_clients_certificate(core, settings, metrics, certs: Certificates) -> None:
    async with tls_servers(core, settings, metrics, certs, mutual=True) as urls:
        for url in urls:
            async with AsyncClient(url, ca_file=certs.ca, cert_file=certs.client[0],
                                   key_file=certs.client[1]) as client:  # fmt: skip
                assert len(await client.classify(CLASSIFIER, random_images(1))) == 1
            async with AsyncClient(url, ca_file=certs.ca, retry=Retry(retries=0)) as anonymous:
                with pytest.raises(Unavailable):  # no client certificate: the handshake is refused
                    await anonymous.classify(CLASSIFIER, random_images(1))
