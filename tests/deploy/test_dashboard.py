"""The Grafana dashboard queries only what a real server exports: every metric and label in its PromQL is looked
up in the live /metrics of `python -m pixelserve.service` after real classify and denoise requests."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.support import DASHBOARD, ROOT, dashboard_queries
from tests.service.models import (
    AUTOENCODER,
    CLASSIFIER,
    DENOISER,
    add_drift_baseline,
    build_repository,
    encode_image,
    random_images,
)
from tests.service.rest_support import server_process

GRAFANA = ROOT / "deploy" / "grafana"
METRIC = re.compile(r"\bpixelserve_[a-z0-9_]+\b")
RECORDED = re.compile(r"\bpixelserve:[a-z0-9_:]+")  # recording rules (level:metric:operations)
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"")
LABEL_VALUES = re.compile(r"label_values\(\s*(\w+)\s*,\s*(\w+)\s*\)")
PROMETHEUS_LABELS = {"instance", "job", "__name__"}  # added by the scrape, not by the server


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """Sample name -> label names, from a real server's /metrics after one request of each task we chart."""
    tmp = tmp_path_factory.mktemp("dashboard")
    repository = build_repository(tmp / "models")
    for model in (AUTOENCODER, CLASSIFIER):  # so the drift gauges exist too
        add_drift_baseline(repository, model, random_images(200, seed=3))
    drift = ("--drift-min-samples", "1", "--drift-refresh-s", "0.05")
    with server_process(repository, tmp / "server.log", *drift) as server:
        png = encode_image(random_images(1)[0])
        for model, task in ((CLASSIFIER, "classify"), (DENOISER, "denoise"), ("no-such-model", "classify")):
            response = httpx.post(f"{server.url}/v1/models/{model}:{task}", content=png, timeout=10)
            assert response.status_code == (404 if model.startswith("no-such") else 200), response.text
        deadline = time.monotonic() + 10
        while "pixelserve_drift_psi{" not in (text := httpx.get(f"{server.url}/metrics", timeout=10).text):
            assert time.monotonic() < deadline, "no drift gauges after a refresh"
            time.sleep(0.05)
    samples: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, set()).update(sample.labels)
    return samples


def test_dashboard_is_valid_json_with_unique_panel_ids() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and dashboard["uid"] == "pixelserve"
    titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    topics = ("request rate", "p50", "p95", "p99", "queue", "compute", "batch size", "error", "model state", "drift")
    for topic in topics:
        assert topic in titles, topic


def test_every_metric_the_dashboard_queries_exists_in_a_live_metrics_endpoint(exported) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queried = {name for query in dashboard_queries(dashboard) for name in METRIC.findall(query)}
    assert len(queried) >= 8
    missing = queried - set(exported)
    assert not missing, f"the dashboard queries metrics the server does not export: {sorted(missing)}"


def test_every_metric_and_label_the_alert_rules_use_exists_in_a_live_metrics_endpoint(exported) -> None:
    """Recording rules (``pixelserve:...``) count as metrics with the labels their own expression groups by."""
    groups = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert rules
    recorded: dict[str, set[str]] = {}
    for rule in rules:
        expr = rule["expr"]
        names, uses = METRIC.findall(expr), RECORDED.findall(expr)
        assert names or uses, expr
        assert set(names) <= set(exported), expr
        assert set(uses) <= set(recorded), f"{expr}: uses a recording rule defined after it, or not at all"
        available = set().union(*(exported[name] for name in names), *(recorded[name] for name in uses))
        used = {m for group in GROUPING.findall(expr) for m in re.findall(r"\w+", group)}
        assert used <= available, f"{expr}: labels {sorted(used - available)} do not exist"
        if "record" in rule:
            recorded[rule["record"]] = used


def test_every_label_the_dashboard_uses_exists_on_the_metrics_it_queries(exported) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    for query in dashboard_queries(dashboard):
        names = METRIC.findall(query)
        available = set().union(*(exported[name] for name in names)) | PROMETHEUS_LABELS
        used = {m for group in GROUPING.findall(query) for m in re.findall(r"\w+", group)}
        used |= set(MATCHER.findall(query))
        used |= {label for _, label in LABEL_VALUES.findall(query)}
        assert used <= available, f"{query}: labels {sorted(used - available)} do not exist"


def test_provisioning_loads_the_dashboard_from_prometheus() -> None:
    (datasource,) = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())["datasources"]
    (provider,) = yaml.safe_load((GRAFANA / "provisioning/dashboards/pixelserve.yml").read_text())["providers"]
    assert datasource["type"] == "prometheus"
    dashboard = json.loads(DASHBOARD.read_text())
    (source,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert source["current"]["value"] == datasource["uid"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = {Path(v.split(":")[1]): v.split(":")[0] for v in compose["services"]["grafana"]["volumes"]}
    assert mounts[Path(provider["options"]["path"])] == "./deploy/grafana/dashboards"
