"""The KServe runtime and InferenceServices, the object-store overlay and the autoscaling variants: every manifest
under deploy/k8s validated without a cluster (Kubernetes kinds by kubernetes-validate, custom resources by the
openAPIV3Schema of their real CRDs, vendored in tests/deploy/crds/), and the invariants that tie them to the server:
its flags, ports and the metrics it actually exports."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from pixelserve.service.observe.metrics import Metrics
from pixelserve.service.settings import Settings
from tests.deploy.support import ROOT

K8S = ROOT / "deploy" / "k8s"
CRDS = Path(__file__).resolve().parent / "crds"
KUBERNETES_VERSION = kubernetes_validate.latest_version()
KSERVE = K8S / "kserve"
RUNTIMES = [KSERVE / "servingruntime.yaml", KSERVE / "clusterservingruntime.yaml"]
INFERENCE_SERVICES = {"rest": KSERVE / "inferenceservice.yaml", "grpc": KSERVE / "inferenceservice-grpc.yaml"}
ADAPTER_RULES = K8S / "autoscaling" / "prometheus-adapter" / "adapter-rules.yaml"
# Every kustomization under deploy/k8s, so a new overlay is built and validated without touching this file.
OVERLAYS = sorted(path.parent.relative_to(K8S).as_posix() for path in K8S.rglob("kustomization.yaml"))
# Plain manifests applied with `kubectl apply -f` (batch-job.yaml and rayjob.yaml: tests/scoring/test_score_deploy.py).
FILES = [*RUNTIMES, *INFERENCE_SERVICES.values(), ADAPTER_RULES]
METRIC = re.compile(r"\bpixelserve_[a-z0-9_]+")


# --- validation -------------------------------------------------------------------------------------------------


@cache
def crd(api_version: str, kind: str) -> dict[str, Any]:
    """The vendored CRD of a custom resource kind, or KeyError when there is none."""
    for path in CRDS.glob("*.json"):
        found = json.loads(path.read_text())
        if f"{found['group']}/{found['version']}" == api_version and found["kind"] == kind:
            return found
    raise KeyError(f"{api_version} {kind}")


def structural(schema: dict[str, Any]) -> dict[str, Any]:
    """A CRD's structural schema as JSON Schema, as strict as `kubectl apply` (server-side field validation
    Strict): unknown fields are errors unless x-kubernetes-preserve-unknown-fields, and `nullable` admits null.
    The other x-kubernetes-* keys (list types, CEL rules) are left out: jsonschema ignores unknown keywords."""
    out = {key: value for key, value in schema.items() if not key.startswith("x-kubernetes-")}
    if "properties" in schema:
        out["properties"] = {name: structural(sub) for name, sub in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if isinstance(schema.get("additionalProperties"), dict):
        out["additionalProperties"] = structural(schema["additionalProperties"])
    if "items" in schema:
        out["items"] = structural(schema["items"])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in schema:
            out[key] = [structural(sub) for sub in schema[key]]
    if schema.get("nullable") and "type" in schema:
        out["type"] = [schema["type"], "null"]
    return out


@cache
def crd_validator(api_version: str, kind: str) -> jsonschema.Draft202012Validator:
    schema = structural(crd(api_version, kind)["openAPIV3Schema"])
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def validate(doc: dict[str, Any]) -> None:
    """One manifest against its schema: a custom resource against its CRD (and its scope), anything else against
    the Kubernetes API schemas. Raises jsonschema.ValidationError (kubernetes-validate's subclasses it)."""
    try:
        definition = crd(doc["apiVersion"], doc["kind"])
    except KeyError:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        return
    crd_validator(doc["apiVersion"], doc["kind"]).validate(doc)
    if definition["scope"] == "Cluster" and "namespace" in doc["metadata"]:
        raise jsonschema.ValidationError(f"{doc['kind']} is cluster-scoped: metadata.namespace is not allowed")


# --- manifests --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def render(kubectl: str):
    """`kubectl kustomize` of an overlay (relative to deploy/k8s) as a list of documents, built once per module:
    deep-copy a document before changing it."""

    def run(overlay: str) -> list[dict[str, Any]]:
        docs = subprocess.run([kubectl, "kustomize", str(K8S / overlay)], capture_output=True, text=True, check=True)
        return [doc for doc in yaml.safe_load_all(docs.stdout) if doc]

    return cache(run)


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def load(path: Path) -> dict[str, Any]:
    (doc,) = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return doc


def exported_metrics() -> set[str]:
    """The metric names the server registers, read from its code (no server is started)."""
    registry = CollectorRegistry()
    Metrics(registry)
    names = set()
    for family in registry.collect():
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
    return names


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, args: list[str] | None = None) -> Settings:
    """Settings as `pixelserve serve ARGS` builds them with these environment variables."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings.from_cli(args or [])


def runtime_container(runtime: dict[str, Any]) -> dict[str, Any]:
    (container,) = runtime["spec"]["containers"]
    return container


def literal_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


# --- every manifest validates -----------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_kustomization_builds_and_every_rendered_manifest_validates(render, overlay: str) -> None:
    docs = render(overlay)
    assert docs
    for doc in docs:
        validate(doc)


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.relative_to(K8S).as_posix())
def test_every_plain_manifest_validates_against_its_schema(path: Path) -> None:
    validate(load(path))


def test_custom_resources_are_checked_against_their_crd_not_skipped() -> None:
    """Each kind we ship has a vendored CRD, so `validate` cannot fall through to kubernetes-validate for it."""
    kinds = {(load(path)["apiVersion"], load(path)["kind"]) for path in [*RUNTIMES, *INFERENCE_SERVICES.values()]}
    kinds.add(("keda.sh/v1alpha1", "ScaledObject"))
    for api_version, kind in kinds:
        assert crd(api_version, kind)["source"]["license"] == "Apache-2.0"


@pytest.mark.parametrize(
    ("path", "field", "value"),
    [
        (INFERENCE_SERVICES["rest"], ("spec", "predictor", "minReplicas"), "1"),  # a string for an integer
        (INFERENCE_SERVICES["rest"], ("spec", "predictor", "model", "storageURI"), "s3://b/p"),  # misspelt field
        (RUNTIMES[0], ("spec", "supportedModelFormats"), {"name": "pixelserve"}),  # an object for a list
        (RUNTIMES[0], ("spec", "containers", 0, "ports", 0, "containerPort"), "8000"),
    ],
    ids=["isvc-int-as-string", "isvc-unknown-field", "runtime-object-for-list", "runtime-port-as-string"],
)
def test_a_custom_resource_with_a_wrong_field_is_rejected(path: Path, field: tuple, value: Any) -> None:
    broken = copy.deepcopy(load(path))
    node = broken
    for key in field[:-1]:
        node = node[key]
    node[field[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)


def test_a_scaled_object_with_a_wrong_field_type_is_rejected(render) -> None:
    (scaled,) = by_kind(render("autoscaling/keda"), "ScaledObject")
    validate(scaled)
    broken = copy.deepcopy(scaled)
    broken["spec"]["maxReplicaCount"] = "ten"
    with pytest.raises(jsonschema.ValidationError, match="ten"):
        validate(broken)
    broken = copy.deepcopy(scaled)
    broken["spec"]["triggers"][0]["metadata"]["threshold"] = 16  # trigger metadata is a map of strings: unquoted
    with pytest.raises(jsonschema.ValidationError, match="16"):
        validate(broken)


def test_a_cluster_scoped_runtime_with_a_namespace_is_rejected() -> None:
    runtime = load(RUNTIMES[1])
    runtime["metadata"]["namespace"] = "default"
    with pytest.raises(jsonschema.ValidationError, match="cluster-scoped"):
        validate(runtime)


# --- KServe ------------------------------------------------------------------------------------------------------


def test_the_namespaced_and_the_cluster_runtime_have_the_same_spec() -> None:
    namespaced, cluster = (load(path) for path in RUNTIMES)
    assert (namespaced["kind"], cluster["kind"]) == ("ServingRuntime", "ClusterServingRuntime")
    assert namespaced["spec"] == cluster["spec"] and namespaced["metadata"] == cluster["metadata"]


def test_the_runtime_serves_the_storage_initializers_folder_on_the_servers_ports(monkeypatch) -> None:
    """KServe's storage initializer fills /mnt/models; the flags and PIXELSERVE_* variables must mean to the
    real CLI what the runtime's ports and probes assume."""
    runtime = load(RUNTIMES[0])
    container = runtime_container(runtime)
    assert container["name"] == "kserve-container"
    assert container["args"][0] == "serve"
    env = literal_env(container)
    known = {f"PIXELSERVE_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= known, set(env) - known
    settings = settings_from(env, monkeypatch, container["args"][1:])
    assert str(settings.model_repository) == "/mnt/models"
    defaults = Settings.model_fields
    assert (settings.http_port, settings.grpc_port) == (defaults["http_port"].default, defaults["grpc_port"].default)
    assert settings.http_host == settings.grpc_host == "0.0.0.0"  # reachable from the Service, not only localhost
    (port,) = container["ports"]  # Knative (Serverless mode) accepts one port: REST
    assert (port["name"], port["containerPort"]) == ("http1", settings.http_port)
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": settings.http_port}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": settings.http_port}
    assert settings.intra_op_threads <= float(container["resources"]["limits"]["cpu"])
    assert {"v2", "grpc-v2"} <= set(runtime["spec"]["protocolVersions"])
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/tmp"] in {v["name"] for v in runtime["spec"]["volumes"]}  # uploads spool there, root is read-only
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "runtime"},
           "spec": {"containers": [container], "volumes": runtime["spec"]["volumes"]}}  # fmt: skip
    kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)  # the container as a core/v1 Container too


@pytest.mark.parametrize("protocol", sorted(INFERENCE_SERVICES))
def test_the_inference_services_select_the_pixelserve_runtime_from_an_object_store(protocol: str) -> None:
    runtime = load(RUNTIMES[0])
    model = load(INFERENCE_SERVICES[protocol])["spec"]["predictor"]["model"]
    formats = {(f["name"], f["version"]) for f in runtime["spec"]["supportedModelFormats"] if f.get("autoSelect")}
    assert (model["modelFormat"]["name"], model["modelFormat"]["version"]) in formats
    assert model["protocolVersion"] == {"rest": "v2", "grpc": "grpc-v2"}[protocol]
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
    assert model["storageUri"].startswith("s3://")
    assert "runtime" not in model and "image" not in model and "args" not in model  # all of it from the runtime


def test_the_grpc_inference_service_exposes_the_servers_grpc_port_in_standard_mode() -> None:
    service = load(INFERENCE_SERVICES["grpc"])
    (port,) = service["spec"]["predictor"]["model"]["ports"]
    assert "h2c" in port["name"]  # KServe marks the port kubernetes.io/h2c by its name
    assert port["containerPort"] == Settings.model_fields["grpc_port"].default
    # With the runtime's REST port that makes two ports, which Knative refuses: Standard (raw Deployment) mode.
    assert service["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"


# --- object store ------------------------------------------------------------------------------------------------


def test_the_object_store_overlay_serves_the_bucket_with_credentials_from_the_aws_chain(render, monkeypatch) -> None:
    docs = render("object-store")
    (deployment,) = by_kind(docs, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[:2] == ["serve", "--model-repository"] and args[2].startswith("s3://")
    (config,) = by_kind(docs, "ConfigMap")
    assert "PIXELSERVE_MODEL_REPOSITORY" not in config["data"]  # the flag is the one place the repository is named
    env = [e for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})]
    secrets = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        assert secrets[name]["optional"] is True  # with IRSA / workload identity there is no Secret
    assert len({ref["name"] for name, ref in secrets.items() if name.startswith("AWS_")}) == 1
    try:
        settings = settings_from(config["data"], monkeypatch, args[1:])
    except ValidationError as exc:
        if "URI" not in str(exc):
            raise
        pytest.skip("this checkout's server does not read object-store repositories yet")
    assert args[2] in str(settings.model_repository)  # kept as a URI, not turned into the path s3:/bucket/...


# --- autoscaling -------------------------------------------------------------------------------------------------


def targets(render) -> dict[str, float]:
    """Requests in flight per replica that each autoscaling variant aims at."""
    (scaled,) = by_kind(render("autoscaling/keda"), "ScaledObject")
    (hpa,) = by_kind(render("autoscaling/prometheus-adapter"), "HorizontalPodAutoscaler")
    rest = load(INFERENCE_SERVICES["rest"])["spec"]["predictor"]
    (grpc,) = load(INFERENCE_SERVICES["grpc"])["spec"]["predictor"]["autoScaling"]["metrics"]
    (trigger,) = scaled["spec"]["triggers"]
    (metric,) = hpa["spec"]["metrics"]
    return {
        "keda": float(trigger["metadata"]["threshold"]),
        "prometheus-adapter": float(metric["pods"]["target"]["averageValue"]),
        "kserve-rest": float(rest["scaleTarget"]),
        "kserve-grpc": float(grpc["external"]["target"]["value"]),
    }


def test_every_variant_scales_on_the_same_in_flight_target_within_one_full_batch(render, monkeypatch) -> None:
    (config,) = by_kind(render("base"), "ConfigMap")
    batch = settings_from(config["data"], monkeypatch).max_batch_size
    found = targets(render)
    assert len(set(found.values())) == 1, found
    assert 1 <= found["keda"] <= batch  # more in flight than one batch only queues in the batcher


def test_every_autoscaling_query_names_a_metric_the_server_exports(render) -> None:
    exported = exported_metrics()
    (scaled,) = by_kind(render("autoscaling/keda"), "ScaledObject")
    (grpc,) = load(INFERENCE_SERVICES["grpc"])["spec"]["predictor"]["autoScaling"]["metrics"]
    (rule,) = yaml.safe_load(load(ADAPTER_RULES)["data"]["config.yaml"])["rules"]
    queries = [
        scaled["spec"]["triggers"][0]["metadata"]["query"],
        grpc["external"]["metric"]["query"],
        rule["seriesQuery"],
        rule["name"]["as"],
    ]
    for query in queries:
        names = METRIC.findall(query)
        assert names and set(names) <= exported, (query, set(names) - exported)
    assert "pixelserve_in_flight_requests" in exported  # the gauge every variant scales on


def test_the_keda_overlay_replaces_the_cpu_hpa_and_queries_its_own_namespace(render) -> None:
    docs = render("autoscaling/keda")
    assert not by_kind(docs, "HorizontalPodAutoscaler")  # KEDA's own HPA would fight a second one
    (scaled,) = by_kind(docs, "ScaledObject")
    (deployment,) = by_kind(docs, "Deployment")
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"  # per replica
    namespace = deployment["metadata"]["namespace"]
    assert f'namespace="{namespace}"' in trigger["metadata"]["query"]
    assert scaled["metadata"]["namespace"] == namespace
    # The CRD's one CEL rule (x-kubernetes-validations, which jsonschema does not run), checked by hand.
    assert scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]


def test_the_adapter_rule_serves_the_metric_the_hpa_asks_for_per_pod(render) -> None:
    (rule,) = yaml.safe_load(load(ADAPTER_RULES)["data"]["config.yaml"])["rules"]
    assert rule["resources"]["overrides"] == {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
    assert "<<.LabelMatchers>>" in rule["metricsQuery"] and "by (<<.GroupBy>>)" in rule["metricsQuery"]
    assert re.fullmatch(rule["name"]["matches"], "pixelserve_in_flight_requests")
    (hpa,) = by_kind(render("autoscaling/prometheus-adapter"), "HorizontalPodAutoscaler")
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == rule["name"]["as"]
    assert metric["pods"]["target"]["type"] == "AverageValue"


@pytest.mark.parametrize("overlay", ["gpu", "autoscaling/prometheus-adapter", "autoscaling/keda"])
def test_the_load_scaled_overlays_have_no_cpu_utilisation_hpa(render, overlay: str) -> None:
    """A GPU pod's CPU is not its bottleneck: the GPU overlay scales on requests in flight like the others."""
    docs = render(overlay)
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    assert len(hpas) + len(by_kind(docs, "ScaledObject")) == 1
    for hpa in hpas:
        assert all(metric["type"] != "Resource" for metric in hpa["spec"]["metrics"])
        assert [metric["type"] for metric in hpa["spec"]["metrics"]] == ["Pods"]


def test_the_cpu_deployment_still_scales_on_cpu(render) -> None:
    """The default (no Prometheus needed) is unchanged: the load-based variants are opt-in."""
    (hpa,) = by_kind(render("."), "HorizontalPodAutoscaler")
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
