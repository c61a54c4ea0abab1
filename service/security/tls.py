"""TLS on both ports from mounted files: the certificate chain and key, and for mutual TLS a client CA bundle.

The files are checked once a second and re-read when they change (cert-manager renews a Secret in place), with
no restart: new connections get the new certificate, open ones keep theirs and finish their requests.
- REST: uvicorn serves with an SSL context made here whose server-name callback, run at the start of every
  handshake, hands the connection the newest context, built whole from the files (a context is never changed
  in place: OpenSSL can add a certificate or a CA to one, not take one out).
- gRPC: grpcio's dynamic server credentials; grpc asks before each new connection's handshake, and gets the new
  configuration once after a change.

A change that does not load (a key that does not match its certificate, a half-written file, files that changed
while being read) is logged once and the last good files stay in use. At start-up the same problems stop the
server with what is wrong.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

if TYPE_CHECKING:
    from ..settings import Settings

log = logging.getLogger(__name__)

RECHECK_S = 1.0


@dataclass(frozen=True, slots=True)
class Pem:
    """The files' contents, already checked to load together."""

    cert: bytes
    key: bytes
    client_ca: bytes | None


class ServerTls:
    """One TLS configuration for both ports."""

    def __init__(self, cert: Path, key: Path, client_ca: Path | None = None, *, recheck_s: float = RECHECK_S) -> None:
        self.cert, self.key, self.client_ca = cert, key, client_ca
        self.recheck_s = recheck_s
        self._seen = self._signature()
        self.pem, self._current = self._load()
        self.generation = 1
        self._grpc_generation = 1
        self._failed: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerTls | None:
        """None when no certificate is configured (both ports speak plaintext); ValueError for half a setup."""
        cert, key, ca = settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file
        if cert is None and key is None:
            if ca is not None:
                raise ValueError("tls_client_ca_file needs tls_cert_file and tls_key_file: mutual TLS is TLS first")
            return None
        if cert is None or key is None:
            raise ValueError("tls_cert_file and tls_key_file go together: set both, or neither for plaintext")
        return cls(cert, key, ca)

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None

    def _paths(self) -> list[Path]:
        return [self.cert, self.key] + ([self.client_ca] if self.client_ca is not None else [])

    def _signature(self) -> tuple[tuple[int, int, int], ...]:
        try:
            stats = [os.stat(path) for path in self._paths()]
        except OSError as exc:
            raise ValueError(f"TLS file cannot be read: {exc}") from exc
        return tuple((s.st_mtime_ns, s.st_size, s.st_ino) for s in stats)

    def _read(self) -> Pem:
        ca = self.client_ca.read_bytes() if self.client_ca is not None else None
        return Pem(self.cert.read_bytes(), self.key.read_bytes(), ca)

    def _load(self) -> tuple[Pem, ssl.SSLContext]:
        """The files' bytes and a server context built from them, both of one version of the files: read
        before and after OpenSSL loads them, and refused (ValueError) if they changed in between."""
        try:
            before = self._read()
            context = self._build()
            after = self._read()
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"TLS files {', '.join(map(str, self._paths()))} cannot be used: {exc}") from exc
        if before != after:
            raise ValueError("TLS files changed while they were read")
        return after, context

    def _build(self) -> ssl.SSLContext:
        """A server context (TLS 1.2+, HTTP/1.1) of the files as they are now."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols(["http/1.1"])
        context.load_cert_chain(self.cert, self.key)
        if self.client_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cafile=self.client_ca)
        return context

    def ssl_context(self) -> ssl.SSLContext:
        """The context uvicorn listens with: each handshake switches to the newest one (`poll`)."""
        listening = self._build()
        listening.sni_callback = self._newest  # called with or without a server name from the client
        return listening

    def _newest(self, connection: ssl.SSLObject, server_name: str | None, listening: ssl.SSLContext) -> None:
        if connection.context is not self._current:
            connection.context = self._current

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """grpcio's own TLS, asking `_fetch` before each new connection's handshake."""
        return grpc.dynamic_ssl_server_credentials(self._grpc_configuration(), self._fetch,
                                                   require_client_authentication=self.mutual)  # fmt: skip

    def _grpc_configuration(self) -> grpc.ServerCertificateConfiguration:
        pem = self.pem
        return grpc.ssl_server_certificate_configuration([(pem.key, pem.cert)], root_certificates=pem.client_ca)

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by grpc on its own threads: only reads what `poll` published (None: no change)."""
        generation = self.generation
        if generation == self._grpc_generation:
            return None
        self._grpc_generation = generation
        return self._grpc_configuration()

    def poll(self) -> bool:
        """Re-read the files if they changed; True when new ones are in use. Runs on the event loop."""
        try:
            signature = self._signature()
            if signature == self._seen:
                return False
            self.pem, self._current = self._load()
        except ValueError as exc:
            if str(exc) != self._failed:  # once per problem, not once a second
                log.warning("%s: keeping the TLS files in use", exc)
                self._failed = str(exc)
            return False
        self._seen, self._failed = signature, None
        self.generation += 1  # after `pem`: a gRPC fetch that sees the new generation gets the new files
        log.info("TLS files re-read (%s): new connections get the new certificate", self.cert)
        return True

    async def watch(self) -> None:
        """Poll until cancelled (the server's lifetime)."""
        while True:
            await asyncio.sleep(self.recheck_s)
            self.poll()
