"""The Kubernetes manifests, rendered by kubectl's own kustomize and validated against the Kubernetes API schemas
bundled in kubernetes-validate (no network), plus the invariants that tie them to the server's settings."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from pixelserve.service.settings import Settings
from tests.deploy.support import ROOT

K8S = ROOT / "deploy" / "k8s"
# 1.27: the first release with gRPC probes enabled by default (GA); and the newest the validator knows.
KUBERNETES_VERSIONS = ["1.27.0", kubernetes_validate.latest_version()]
OVERLAYS = {"cpu": K8S, "gpu": K8S / "gpu"}


def render(kubectl: str, directory: Path) -> dict[str, dict[str, Any]]:
    """`kubectl kustomize` output keyed by kind."""
    out = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=True).stdout
    return {doc["kind"]: doc for doc in yaml.safe_load_all(out) if doc}


@pytest.fixture(scope="module", params=sorted(OVERLAYS))
def manifests(request: pytest.FixtureRequest, kubectl: str) -> dict[str, dict[str, Any]]:
    return render(kubectl, OVERLAYS[request.param])


def container(manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (only,) = manifests["Deployment"]["spec"]["template"]["spec"]["containers"]
    return only


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings exactly as the server would build them from these environment variables."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_rendered_manifests_validate_against_the_kubernetes_schemas(manifests, version: str) -> None:
    assert set(manifests) == {"ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    for doc in manifests.values():
        kubernetes_validate.validate(doc, version, strict=True)


def test_a_misspelt_field_fails_validation(manifests) -> None:
    """The validator really checks: a typo in the pod spec is rejected."""
    broken = yaml.safe_load(yaml.safe_dump(manifests["Deployment"]))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/", "port": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_every_configmap_key_is_a_server_setting_with_a_valid_value(manifests, monkeypatch) -> None:
    """Settings ignore unknown PIXELSERVE_* variables, so a misspelt key would silently do nothing."""
    data = manifests["ConfigMap"]["data"]
    known = {f"PIXELSERVE_{name.upper()}" for name in Settings.model_fields}
    assert set(data) <= known, set(data) - known
    settings = settings_from(data, monkeypatch)
    assert (settings.http_port, settings.grpc_port, str(settings.model_repository)) == (8000, 8001, "/models")
    assert container(manifests)["envFrom"] == [{"configMapRef": {"name": manifests["ConfigMap"]["metadata"]["name"]}}]


def test_termination_grace_covers_the_prestop_sleep_and_the_server_drain(manifests, monkeypatch) -> None:
    drain_s = settings_from(manifests["ConfigMap"]["data"], monkeypatch).drain_grace_s
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    command = container(manifests)["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] >= int(command[1]) + drain_s + 1


def test_probes_use_the_health_endpoints_and_grpc_health(manifests) -> None:
    spec = container(manifests)
    ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
    assert ports == {"http": 8000, "grpc": 8001}
    assert spec["startupProbe"]["grpc"] == {"port": ports["grpc"], "service": ""}
    assert spec["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert spec["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    service_ports = {p["name"]: (p["port"], p["targetPort"]) for p in manifests["Service"]["spec"]["ports"]}
    assert service_ports == {"http": (8000, "http"), "grpc": (8001, "grpc")}
    pod_labels = manifests["Deployment"]["spec"]["template"]["metadata"]["labels"]
    for selector in (manifests["Service"]["spec"]["selector"], manifests["PodDisruptionBudget"]["spec"]["selector"]):
        labels = selector.get("matchLabels", selector)
        assert labels.items() <= pod_labels.items()


def test_onnxruntime_threads_fit_the_cpu_limit(manifests, monkeypatch) -> None:
    settings = settings_from(manifests["ConfigMap"]["data"], monkeypatch)
    limit = float(container(manifests)["resources"]["limits"]["cpu"])
    assert 1 <= settings.intra_op_threads <= limit


def test_the_gpu_overlay_asks_for_a_gpu_and_cuda(kubectl, monkeypatch) -> None:
    cpu, gpu = render(kubectl, OVERLAYS["cpu"]), render(kubectl, OVERLAYS["gpu"])
    assert "nvidia.com/gpu" not in container(cpu)["resources"]["limits"]
    assert container(gpu)["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container(gpu)["image"].endswith("-gpu") and not container(cpu)["image"].endswith("-gpu")
    assert settings_from(gpu["ConfigMap"]["data"], monkeypatch).device == "cuda"
    assert settings_from(cpu["ConfigMap"]["data"], monkeypatch).device == "cpu"


# The KServe runtime, the InferenceServices, the object-store overlay and the autoscaling variants (with their CRDs):
# test_kserve_and_autoscaling.py.


@pytest.mark.parametrize("overlay", ["tls", "mtls"])
def test_the_tls_overlays_mount_secrets_for_every_file_setting_and_probe_over_tls(kubectl, overlay: str,
                                                                                  monkeypatch) -> None:  # fmt: skip
    manifests = render(kubectl, K8S / overlay)
    for doc in manifests.values():
        kubernetes_validate.validate(doc, KUBERNETES_VERSIONS[-1], strict=True)
    spec = container(manifests)
    files = {e["name"]: e["value"] for e in spec["env"] if e["name"].endswith("_FILE")}
    settings = settings_from(files, monkeypatch)
    assert settings.tls_cert_file is not None and settings.tls_key_file is not None and settings.api_key_file
    assert (settings.tls_client_ca_file is not None) == (overlay == "mtls")
    volumes = {v["name"]: v for v in manifests["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m for m in spec["volumeMounts"]}
    for path in files.values():  # every file the server reads comes from a Secret, mounted read-only, not by subPath
        (mount,) = [m for where, m in mounts.items() if path.startswith(where + "/")]
        assert mount["readOnly"] and "subPath" not in mount  # a subPath mount never sees a Secret's update
        assert "secret" in volumes[mount["name"]]
    probes = [spec[name] for name in ("startupProbe", "readinessProbe", "livenessProbe")]
    assert all("grpc" not in probe for probe in probes)  # kubelet gRPC probes cannot speak TLS
    if overlay == "tls":
        assert all(probe["httpGet"]["scheme"] == "HTTPS" for probe in probes)
    else:  # the kubelet cannot present a client certificate: the probe runs in the container
        assert all(probe["exec"]["command"][:2] == ["pixelserve", "probe"] and "httpGet" not in probe
                   for probe in probes)  # fmt: skip
