"""Which operations a core runs with, decided once from the settings: the hooks it calls around every request
(service/hooks.py). The server, batch scoring, verify and the tests all build their cores here."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .core.core import InferenceCore
from .hooks import Hooks, RequestHook
from .observe.metrics import Metrics, RequestMetrics
from .settings import Settings

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # imported only when they are on
    from .observe.access_log import AccessLog
    from .observe.tracing import Tracing


def operations(
    settings: Settings, metrics: Metrics, *, tracing: Tracing | None = None, access: AccessLog | None = None
) -> Hooks:
    """Tracing first (its trace id is in the other hooks' records), then the access log, request metrics
    (always), the payload log and drift as the settings ask."""
    hooks: list[RequestHook] = []
    if tracing is not None:
        from .observe.tracing import TracingHook

        hooks.append(TracingHook(tracing))
    if access is not None:
        from .observe.access_log import AccessLogHook

        hooks.append(AccessLogHook(access, probes=settings.access_log_probes))
    hooks.append(RequestMetrics(metrics))
    if settings.payload_log_dir is not None:
        from .observe.payload_hook import PayloadHook
        from .observe.payloads import PayloadLog

        hooks.append(PayloadHook(PayloadLog.from_settings(settings, on_count=metrics.payload_rows_counted)))
    if settings.drift_monitoring:
        from .observe.drift import DriftHook

        hooks.append(DriftHook(metrics, refresh_s=settings.drift_refresh_s, min_samples=settings.drift_min_samples))
    return Hooks(hooks)


def serving_core(settings: Settings, metrics: Metrics) -> InferenceCore:
    """The server's core, not yet started: every operation the settings turn on, the edge's included (tracing
    imports its SDK only then). Raises ValueError for a payload log or exporter the settings cannot have."""
    tracing = access = None
    if settings.tracing:
        from .observe.exporters import describe, sdk_disabled

        if sdk_disabled():
            log.warning("--tracing is on but OTEL_SDK_DISABLED=true: no spans and no trace context")
        else:
            from .observe.tracing import Tracing

            tracing = Tracing()
            log.info(describe())
    if settings.access_log:
        from .observe.access_log import AccessLog

        access = AccessLog(metrics, settings.access_log_buffer)
    return InferenceCore(settings, metrics, operations(settings, metrics, tracing=tracing, access=access))


async def build_core(
    settings: Settings, metrics: Metrics, *, tracing: Tracing | None = None, access: AccessLog | None = None
) -> InferenceCore:
    """A started core with every model the policy picks loaded and warmed, and hot reload running if enabled.
    In-process users (batch scoring, verify) get no edge operations unless they pass them."""
    core = InferenceCore(settings, metrics, operations(settings, metrics, tracing=tracing, access=access))
    await core.start()
    return core
