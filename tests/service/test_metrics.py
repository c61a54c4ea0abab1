"""Request metrics as a hook (counts with status codes, in-flight gauge), model states, exposition."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pixelserve.service.core.calls import CallScope
from pixelserve.service.errors import ModelNotFound, Overloaded, PayloadTooLarge
from pixelserve.service.hooks import Hooks
from pixelserve.service.observe.metrics import UNKNOWN_MODEL, Metrics, RequestMetrics

LABELS = {"model": "m", "task": "classify", "protocol": "rest"}


@pytest.fixture
def metrics(metrics: Metrics) -> Metrics:
    """Metrics that know model "m", as the repository makes them when it loads a model."""
    metrics.set_model_state("m", 3, "ready")
    return metrics


def requests(metrics: Metrics, code: str, version: str = "") -> float | None:
    return metrics.registry.get_sample_value("pixelserve_requests_total", {**LABELS, "version": version, "code": code})


def track(metrics: Metrics, model: str = "m") -> CallScope:
    """One REST classify request's scope, with request metrics as its only hook."""
    return CallScope(Hooks([RequestMetrics(metrics)]), "classify", model, "rest")


async def test_request_metrics_count_success_with_the_served_version(metrics: Metrics) -> None:
    with track(metrics) as call:
        assert metrics.registry.get_sample_value("pixelserve_in_flight_requests", {"protocol": "rest"}) == 1
        await asyncio.sleep(0)
        call.served = SimpleNamespace(version=3)  # type: ignore[assignment]
    assert requests(metrics, "OK", "3") == 1
    assert metrics.registry.get_sample_value("pixelserve_in_flight_requests", {"protocol": "rest"}) == 0
    duration = {**LABELS, "version": "3"}
    assert metrics.registry.get_sample_value("pixelserve_request_duration_seconds_count", duration) == 1


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (PayloadTooLarge("big"), "INVALID_ARGUMENT"),
        (ModelNotFound("nope"), "NOT_FOUND"),
        (Overloaded("full", retry_after=1), "RESOURCE_EXHAUSTED"),
        (ValueError("bug"), "INTERNAL"),
        (asyncio.CancelledError(), "CANCELLED"),
    ],
)
def test_request_metrics_record_the_code_of_the_raised_error_and_reraise(
    metrics: Metrics, error: BaseException, code: str
) -> None:
    with pytest.raises(type(error)), track(metrics):
        raise error
    assert requests(metrics, code) == 1
    assert requests(metrics, "OK") is None


def test_model_state_is_one_hot(metrics: Metrics) -> None:
    metrics.set_model_state("m", 1, "loading")
    metrics.set_model_state("m", 1, "ready")
    values = {
        state: metrics.registry.get_sample_value(
            "pixelserve_model_state", {"model": "m", "version": "1", "state": state}
        )
        for state in ("loading", "ready", "failed", "unavailable", "unloading")
    }
    assert values == {"loading": 0, "ready": 1, "failed": 0, "unavailable": 0, "unloading": 0}


def test_render_is_prometheus_text_with_every_metric(metrics: Metrics) -> None:
    metrics.batch("m", 1).observe_batch(3, [0.001, 0.002], 0.0005)
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(body.decode())}
    assert {
        "pixelserve_requests",
        "pixelserve_request_duration_seconds",
        "pixelserve_queue_duration_seconds",
        "pixelserve_compute_duration_seconds",
        "pixelserve_batch_size",
        "pixelserve_in_flight_requests",
        "pixelserve_queue_depth",
        "pixelserve_model_state",
    } <= names


def test_separate_instances_do_not_share_a_registry() -> None:
    first, second = Metrics(), Metrics()
    first.batch("m", 1).observe_batch(1, [0.0], 0.0)
    assert second.registry.get_sample_value("pixelserve_batch_size_count", {"model": "m", "version": "1"}) is None


def test_unknown_model_names_share_one_label_so_clients_cannot_mint_series(metrics: Metrics) -> None:
    for name in ("nope", "../etc/passwd", "x" * 200):
        with pytest.raises(ModelNotFound), track(metrics, name):
            raise ModelNotFound(f"no model {name}")
    labels = {**LABELS, "model": UNKNOWN_MODEL, "version": "", "code": "NOT_FOUND"}
    assert metrics.registry.get_sample_value("pixelserve_requests_total", labels) == 3
    models = {
        s.labels["model"]
        for f in text_string_to_metric_families(metrics.render()[0].decode())
        for s in f.samples
        if f.name == "pixelserve_requests"
    }
    assert models == {UNKNOWN_MODEL}
