"""Where spans go, read from the standard OpenTelemetry variables as the SDK environment spec defines them.

- ``OTEL_SDK_DISABLED=true``: no tracing at all, whatever ``--tracing`` says (`sdk_disabled`).
- ``OTEL_TRACES_EXPORTER``: a comma list of ``otlp`` (the default), ``console`` and ``none`` (no exporter: spans
  are still made and the trace context still propagated, for a proxy or mesh that reads it).
- ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL``, else ``OTEL_EXPORTER_OTLP_PROTOCOL``: ``http/protobuf`` (the default,
  extra `[otlp]`) or ``grpc`` (extra `[otlp-grpc]`). The exporters read their own ``OTEL_EXPORTER_OTLP_*``
  endpoint, headers, timeout and certificate variables.

Anything else is a ValueError with what to set or install, so a misconfigured collector stops start-up instead
of silently dropping every span.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter

EXPORTERS = ("otlp", "console", "none")
PROTOCOLS = {
    "http/protobuf": ("opentelemetry.exporter.otlp.proto.http.trace_exporter", "otlp"),
    "grpc": ("opentelemetry.exporter.otlp.proto.grpc.trace_exporter", "otlp-grpc"),
}
DEFAULT_PROTOCOL = "http/protobuf"


def sdk_disabled(env: Mapping[str, str] = os.environ) -> bool:
    """The spec's boolean: only a case-insensitive "true" is true."""
    return env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def exporter_names(env: Mapping[str, str] = os.environ) -> list[str]:
    """The exporters asked for, deduplicated in order; ``none`` contributes nothing."""
    raw = env.get("OTEL_TRACES_EXPORTER", "").strip() or "otlp"
    names = [name.strip().lower() for name in raw.split(",") if name.strip()]
    unknown = [name for name in names if name not in EXPORTERS]
    if unknown:
        raise ValueError(f"OTEL_TRACES_EXPORTER={unknown[0]!r} is not supported here: use otlp, console or none "
                         "(a comma list for several)")  # fmt: skip
    return [name for name in dict.fromkeys(names) if name != "none"]


def otlp_protocol(env: Mapping[str, str] = os.environ) -> str:
    raw = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or DEFAULT_PROTOCOL
    protocol = raw.strip().lower()
    if protocol not in PROTOCOLS:
        raise ValueError(f"OTLP protocol {raw!r} is not supported here: use grpc or http/protobuf "
                         "(OTEL_EXPORTER_OTLP_PROTOCOL / OTEL_EXPORTER_OTLP_TRACES_PROTOCOL)")  # fmt: skip
    return protocol


def _otlp(protocol: str) -> SpanExporter:
    module_name, extra = PROTOCOLS[protocol]
    try:
        module = __import__(module_name, fromlist=["OTLPSpanExporter"])
    except ImportError as exc:
        raise ValueError(f"OTLP over {protocol} needs its exporter: pip install 'pixelserve[{extra}]' "
                         "(or OTEL_TRACES_EXPORTER=console|none)") from exc  # fmt: skip
    return module.OTLPSpanExporter()


def exporters(env: Mapping[str, str] = os.environ) -> list[SpanExporter]:
    """The configured span exporters, built (an OTLP exporter does not connect until it first exports)."""
    built: list[SpanExporter] = []
    for name in exporter_names(env):
        built.append(_otlp(otlp_protocol(env)) if name == "otlp" else ConsoleSpanExporter())
    return built


def describe(env: Mapping[str, str] = os.environ) -> str:
    """One line for the start-up log: where spans go."""
    names = exporter_names(env)
    if not names:
        return "tracing on, no exporter (OTEL_TRACES_EXPORTER=none): trace context is propagated only"
    parts = [f"otlp ({otlp_protocol(env)})" if name == "otlp" else name for name in names]
    return "tracing on, spans to " + ", ".join(parts)
