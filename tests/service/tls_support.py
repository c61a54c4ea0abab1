"""A real server process with TLS on both ports, and the clients' side of a TLS connection to it."""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx

from tests.service.rest_support import ServerProcess
from tests.tls_support import Certificates


class TlsServer(ServerProcess):
    """`pixelserve serve` with ``--tls-cert-file``/``--tls-key-file`` (and ``--tls-client-ca-file`` for mutual
    TLS); `url` is https://localhost:PORT, which the test certificates name."""

    def __init__(self, repository: Path, log_path: Path, certs: Certificates, cert: tuple[Path, Path], *args: str,
                 mutual: bool = False, client_ca: Path | None = None,
                 env: dict[str, str] | None = None) -> None:  # fmt: skip
        """`mutual`: clients need a certificate from `client_ca` (default: the test CA)."""
        tls = ["--tls-cert-file", str(cert[0]), "--tls-key-file", str(cert[1])]
        if mutual:
            tls += ["--tls-client-ca-file", str(client_ca or certs.ca)]
        super().__init__(repository, log_path, *tls, *args, env=env)
        self.certs = certs
        self.mutual = mutual
        self.url = f"https://localhost:{self.http_port}"
        self.grpc_target = f"localhost:{self.grpc_port}"

    def client_cert(self) -> tuple[str, str] | None:
        return (str(self.certs.client[0]), str(self.certs.client[1])) if self.mutual else None

    def http(self, **kwargs: object) -> httpx.Client:
        """An HTTPS client that trusts the test CA (with the client certificate under mutual TLS)."""
        context = ssl.create_default_context(cafile=str(self.certs.ca))
        if (cert := self.client_cert()) is not None:
            context.load_cert_chain(*cert)
        return httpx.Client(base_url=self.url, verify=context, **kwargs)  # type: ignore[arg-type]

    def channel(self, *, client_cert: bool | None = None) -> grpc.Channel:
        """A gRPC channel over TLS; `client_cert` defaults to presenting one under mutual TLS."""
        present = self.mutual if client_cert is None else client_cert
        key, chain = (self.certs.client[1].read_bytes(), self.certs.client[0].read_bytes()) if present else (None, None)
        credentials = grpc.ssl_channel_credentials(self.certs.ca.read_bytes(), private_key=key, certificate_chain=chain)
        return grpc.secure_channel(self.grpc_target, credentials)

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        with self.http(timeout=1.0) as client:
            while time.monotonic() < deadline:
                assert self.process.poll() is None, f"server exited early:\n{self.log()}"
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/v2/health/ready").status_code == 200:
                        return
                time.sleep(0.05)
        raise AssertionError(f"server not ready after {timeout_s}s:\n{self.log()}")


@contextlib.contextmanager
def tls_server(repository: Path, log_path: Path, certs: Certificates, cert: tuple[Path, Path], *args: str,
               mutual: bool = False, client_ca: Path | None = None,
               env: dict[str, str] | None = None) -> Iterator[TlsServer]:  # fmt: skip
    server = TlsServer(repository, log_path, certs, cert, *args, mutual=mutual, client_ca=client_ca, env=env)
    try:
        server.wait_ready()
        yield server
    finally:
        server.close()


def presented_serial(port: int, ca: Path, *, alpn: str, client: tuple[Path, Path] | None = None) -> int:
    """The serial number of the certificate a port presents to a new connection (h2 for gRPC)."""
    from tests.tls_support import serial_of

    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols([alpn])
    if client is not None:
        context.load_cert_chain(*client)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return serial_of(ssl.DER_cert_to_PEM_cert(der).encode())


def handshake_refused(port: int, ca: Path, *, alpn: str, client: tuple[Path, Path] | None = None) -> str:
    """The error a TLS client gets from `port` (empty when the handshake and a first read succeed): under TLS 1.3
    a server's refusal of the client's certificate arrives with the first read after the handshake."""
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols([alpn])
    if client is not None:
        context.load_cert_chain(*client)
    try:
        first = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" if alpn == "h2" else b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            tls.sendall(first)
            if not tls.recv(1):
                return "closed"
    except (ssl.SSLError, OSError) as error:
        return f"{type(error).__name__}: {error}"
    return ""
