"""`pixelserve probe`: the health check of a server in the same container, speaking whatever its settings say.

    pixelserve probe                 # GET /v2/health/ready: exit 0 when ready, 1 otherwise
    pixelserve probe --path /v2/health/live

It reads the server's own ``PIXELSERVE_*`` variables, so it follows the server onto HTTPS when
``PIXELSERVE_TLS_CERT_FILE`` is set. Like the kubelet's HTTPS probes it does not verify the server's certificate
(it connects to its own container by address, which the certificate rarely names). Under mutual TLS it presents
``PIXELSERVE_PROBE_CERT_FILE`` and ``PIXELSERVE_PROBE_KEY_FILE``, else the server's own certificate and key
(which then need the clientAuth usage and the client CA's signature, as cert-manager issues them by default).
The Docker image's HEALTHCHECK and the Kubernetes mutual-TLS overlay's exec probes run it; plain HTTP and HTTPS
probes need no command.
"""

from __future__ import annotations

import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from pixelserve.commandline import CommandSettings, parse


class ProbeSettings(CommandSettings):
    """Check a server in the same container (its port and TLS from the same PIXELSERVE_* variables)."""

    model_config = SettingsConfigDict(cli_prog_name="pixelserve probe")

    path: str = Field("/v2/health/ready", description="what to GET: /v2/health/ready or /v2/health/live")
    host: str = Field("127.0.0.1", description="the server's address as seen from here")
    http_port: int = Field(8000, description="the server's REST port")
    timeout_s: float = Field(2.0, gt=0)
    tls_cert_file: Path | None = Field(None, description="set: the server speaks HTTPS")
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = Field(None, description="set: the server asks for a client certificate")
    probe_cert_file: Path | None = Field(None, description="the probe's client certificate (default: the server's)")
    probe_key_file: Path | None = Field(None, description="its key (default: the server's)")


def probe(settings: ProbeSettings) -> tuple[bool, str]:
    """(healthy, what happened)."""
    context = None
    scheme = "http"
    if settings.tls_cert_file is not None:
        scheme = "https"
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        if settings.tls_client_ca_file is not None:
            cert = settings.probe_cert_file or settings.tls_cert_file
            key = settings.probe_key_file or (settings.tls_key_file if settings.probe_cert_file is None else None)
            context.load_cert_chain(cert, key)
    url = f"{scheme}://{settings.host}:{settings.http_port}{settings.path}"
    try:
        with urllib.request.urlopen(url, timeout=settings.timeout_s, context=context) as response:
            return response.status == 200, f"{url}: {response.status}"
    except urllib.error.HTTPError as error:
        return False, f"{url}: {error.code}"
    except (OSError, ssl.SSLError) as error:
        return False, f"{url}: {error}"


def main(argv: list[str] | None = None) -> int:
    settings = parse(ProbeSettings, argv, "probe")
    if isinstance(settings, int):
        return settings
    healthy, what = probe(settings)
    print(what, file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1
