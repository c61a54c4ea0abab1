"""The committed default model repository: every model loads, agrees with its model.json, meets its floor,
and its recorded quality reproduces on the real test set."""

from __future__ import annotations

from pathlib import Path

import onnx
import onnxruntime as ort
import pytest

from pixelserve.modelspec import MODEL_FILE, SPEC_FILE, ModelSpec
from pixelserve.training.reproduce import reproduce_quality

REPOSITORY = Path(__file__).resolve().parents[2] / "models"
VERSIONS = sorted(p for p in REPOSITORY.glob("*/*") if (p / SPEC_FILE).exists())
REPOSITORY_LIMIT_BYTES = 25 * 1024 * 1024

# (metric, floor): the quality floors, measured on the real test split.
FLOORS = {
    "mnist-classifier": ("accuracy", 0.995),
    "cifar10-classifier": ("accuracy", 0.90),
    "mnist-denoiser": ("psnr@sigma=0.3", 23.0),
    "mnist-autoencoder": ("psnr", 23.0),
    "cifar10-denoiser": ("psnr@sigma=0.1", 28.0),
}
# Reproduction tolerance: 0.1 points (accuracy in percent, PSNR in dB).
TOLERANCE = {"accuracy": 0.001}


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def test_repository_holds_the_default_models_within_the_size_budget() -> None:
    names = {p.parent.name for p in VERSIONS}
    assert set(FLOORS) <= names, f"missing default models: {set(FLOORS) - names}"
    size = sum(f.stat().st_size for f in REPOSITORY.rglob("*") if f.is_file())
    assert size <= REPOSITORY_LIMIT_BYTES, f"model repository is {size / 2**20:.1f} MiB"


@pytest.mark.parametrize("version_dir", VERSIONS, ids=_id)
def test_model_json_validates_and_matches_the_graph(version_dir: Path) -> None:
    spec = ModelSpec.load(version_dir / SPEC_FILE)
    assert spec.name == version_dir.parent.name and spec.version == int(version_dir.name)
    model = onnx.load(str(version_dir / MODEL_FILE))
    graph = model.graph
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17

    def described(values) -> list[tuple[str, list[int]]]:
        return [
            (v.name, [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim])
            for v in values
        ]

    assert described(graph.input) == [(t.name, t.shape) for t in spec.inputs]
    assert described(graph.output) == [(t.name, t.shape) for t in spec.outputs]
    assert spec.inputs[0].dtype == "uint8" and spec.inputs[0].shape[0] == -1
    if spec.quantization is None:  # Keras parity; an int8 variant's check is its accuracy gate instead
        assert spec.parity is not None and spec.parity.passed and spec.parity.samples >= 256
    else:
        assert spec.quantization.quality.passed and spec.quantization.speed.passed
    session = ort.InferenceSession(str(version_dir / MODEL_FILE), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == [t.name for t in spec.outputs]
    for artifact in spec.artifacts:
        assert (version_dir / artifact).is_file()


@pytest.mark.slow
@pytest.mark.parametrize("version_dir", VERSIONS, ids=_id)
def test_recorded_quality_reproduces_and_meets_the_floor(version_dir: Path, shared_datasets: Path) -> None:
    result = reproduce_quality(version_dir, shared_datasets)
    assert result["dataset_sha256_matches"]
    for metric, recorded in result["recorded"].items():
        tolerance = TOLERANCE.get(metric, 0.1 if "psnr" in metric else 0.001)
        assert abs(result["measured"][metric] - recorded) <= tolerance, metric
    if "ece" in result:  # the served probabilities' calibration error, measured in the same run
        assert result["ece"]["measured"] == pytest.approx(result["ece"]["recorded"], abs=1e-4)
    elif ModelSpec.load(version_dir / SPEC_FILE).task == "classify":
        assert ModelSpec.load(version_dir / SPEC_FILE).quantization is not None, "float classifiers record it"
    name = version_dir.parent.name
    if name in FLOORS:
        metric, floor = FLOORS[name]
        assert result["measured"][metric] >= floor, f"{name} {metric} {result['measured'][metric]:.4f} < {floor}"


# int8 variants record their float source and gates instead (tests/training/test_quantize.py)
CLASSIFIERS = [
    v for v in VERSIONS if (s := ModelSpec.load(v / SPEC_FILE)).task == "classify" and s.quantization is None
]
AUTOENCODERS = [v for v in VERSIONS if ModelSpec.load(v / SPEC_FILE).anomaly is not None]


@pytest.mark.parametrize("version_dir", CLASSIFIERS, ids=_id)
def test_classifiers_record_calibration_and_scaling_in_the_graph_lowered_the_test_ece(version_dir: Path) -> None:
    """Export fits a temperature for every classifier; where it went into the graph, the test split's ECE (never
    seen by the decision) went down, and where it did not, the served probabilities are the uncalibrated ones."""
    spec = ModelSpec.load(version_dir / SPEC_FILE)
    assert spec.calibration is not None, "export records a calibration for every classifier"
    c = spec.calibration
    if c.in_graph:
        assert c.after["ece"] < c.before["ece"]
        nodes = onnx.load(str(version_dir / MODEL_FILE)).graph.node
        assert "probabilities_uncalibrated" in {n.output[0] for n in nodes}
    else:
        assert c.after == c.before


@pytest.mark.slow
@pytest.mark.parametrize("version_dir", AUTOENCODERS, ids=_id)
def test_recorded_anomaly_detection_reproduces_within_0_01(version_dir: Path, shared_datasets: Path) -> None:
    from pixelserve.training.detection import anomaly_detection

    recorded = ModelSpec.load(version_dir / SPEC_FILE).anomaly
    assert recorded is not None and recorded.detection is not None, "export measures detection for every threshold"
    measured = anomaly_detection(version_dir, shared_datasets, uploaded=True)
    for metric in ("auroc", "aupr", "fpr_at_95_tpr"):
        assert getattr(measured, metric) == pytest.approx(getattr(recorded.detection, metric), abs=0.01), metric


@pytest.mark.slow
@pytest.mark.parametrize("version_dir", [v for v in CLASSIFIERS if ModelSpec.load(v / SPEC_FILE).pairing], ids=_id)
def test_recorded_ood_report_reproduces_within_0_01(version_dir: Path, shared_datasets: Path) -> None:
    from pixelserve.training.detection import ood_report

    spec = ModelSpec.load(version_dir / SPEC_FILE)
    assert spec.pairing is not None and spec.pairing.ood is not None, "export measures the paired OOD flag"
    partner = max((REPOSITORY / spec.pairing.ood_model).glob("*/model.json"), key=lambda p: int(p.parent.name))
    measured = ood_report(version_dir, partner.parent, shared_datasets, uploaded=True)
    assert measured.threshold == pytest.approx(spec.pairing.ood.threshold)
    for metric in ("auroc", "aupr", "fpr_at_95_tpr"):
        got, want = getattr(measured.detection, metric), getattr(spec.pairing.ood.detection, metric)
        assert got == pytest.approx(want, abs=0.01), metric
    for name, rate in spec.pairing.ood.flag_rates.items():
        assert measured.flag_rates[name] == pytest.approx(rate, abs=0.01), name
