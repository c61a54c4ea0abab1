"""TLS on both ports from mounted files: the certificate chain and key, and for mutual TLS a client CA bundle.

The files are checked once a second and re-read when they change (cert-manager renews a Secret in place), with
no restart: new connections get the new certificate, open ones keep theirs and finish their requests.
- REST: uvicorn serves with SSL contexts made here; a change is loaded into the same contexts, on the event loop
  that runs their handshakes.
- gRPC: grpcio's dynamic server credentials; grpc asks before each new connection's handshake, and gets the new
  configuration once after a change.

A change that does not load (a key that does not match its certificate, a half-written file) is logged and the
last good files stay in use. At start-up the same problems stop the server with what is wrong.
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
        self.pem = self._load()
        self.generation = 1
        self._grpc_generation = 1
        self._contexts: list[ssl.SSLContext] = []

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

    def _load(self) -> Pem:
        """Read the files and check them as OpenSSL will use them: ValueError says which part is wrong."""
        try:
            self._configure(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
            pem = Pem(self.cert.read_bytes(), self.key.read_bytes(),
                      self.client_ca.read_bytes() if self.client_ca is not None else None)  # fmt: skip
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"TLS files {', '.join(map(str, self._paths()))} cannot be used: {exc}") from exc
        return pem

    def _configure(self, context: ssl.SSLContext) -> ssl.SSLContext:
        context.load_cert_chain(self.cert, self.key)
        if self.client_ca is not None:
            context.load_verify_locations(cafile=self.client_ca)  # adds: a CA dropped later stays until restart
        return context

    def ssl_context(self) -> ssl.SSLContext:
        """A server context for uvicorn (TLS 1.2+, HTTP/1.1), kept current by `poll`."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols(["http/1.1"])
        if self.client_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
        self._contexts.append(self._configure(context))
        return context

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
        except ValueError as exc:
            log.warning("%s: keeping the TLS files in use", exc)
            return False
        if signature == self._seen:
            return False
        self._seen = signature
        try:
            pem = self._load()
            for context in self._contexts:
                self._configure(context)
        except (ValueError, OSError, ssl.SSLError) as exc:
            log.warning("TLS files changed but do not load (%s): keeping the ones in use", exc)
            return False
        self.pem = pem
        self.generation += 1
        log.info("TLS files re-read (%s): new connections get the new certificate", self.cert)
        return True

    async def watch(self) -> None:
        """Poll until cancelled (the server's lifetime)."""
        while True:
            await asyncio.sleep(self.recheck_s)
            self.poll()
