"""int8 variants: the gates refuse a variant that loses accuracy or is not faster, and a good one is written
with its float source, its gates and its own golden set (real MNIST, the committed classifier's latest version)."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest

from pixelserve import golden
from pixelserve.measured import GOLDEN_FILE
from pixelserve.modelspec import MODEL_FILE, OUTPUT_PROBABILITIES, SPEC_FILE, ModelSpec, sha256_file
from pixelserve.training import evaluate, quantize
from pixelserve.training.cli import main as training_cli
from pixelserve.training.data import Dataset, load_dataset
from pixelserve.training.robustness import prepared_batch
from pixelserve.training.versions import latest_version
from tests.prerequisites import require

REPOSITORY = Path(__file__).resolve().parents[2] / "models"
TEST_IMAGES = 1000  # of the real test split: enough for a 0.3-point gate to mean something, quick on 2 cores
CALIBRATION = 256


@pytest.fixture(scope="module")
def float_dir() -> Path:
    require((REPOSITORY / "mnist-classifier").is_dir(), "committed mnist-classifier not found")
    return latest_version(REPOSITORY / "mnist-classifier")


@pytest.fixture(scope="module")
def mnist(shared_datasets: Path) -> Dataset:
    data = load_dataset("mnist", shared_datasets)
    return dataclasses.replace(data, x_test=data.x_test[:TEST_IMAGES], y_test=data.y_test[:TEST_IMAGES])


@pytest.mark.parametrize("value", [0, 255], ids=["black", "saturated"])
def test_a_variant_calibrated_on_wrong_images_is_refused(float_dir: Path, mnist: Dataset, tmp_path: Path, value: int):
    """Uniform calibration images give activation ranges of a single value: every real digit saturates them."""
    wrong = np.full((CALIBRATION, *mnist.image_shape), value, dtype=np.uint8)
    result = quantize.quantize(float_dir, tmp_path, mnist, calibration=wrong)
    assert result.written is None and result.reason.startswith("quality gate")
    assert len(result.tries) == len(quantize.exclusion_plans(onnx.load(float_dir / MODEL_FILE)))
    assert all(gate.float_value - gate.int8_value > gate.max_loss for _, gate in result.tries)
    assert result.speed is None and not any(tmp_path.iterdir())
    assert quantize.report(result) == 1


@pytest.fixture(scope="module")
def variant(float_dir: Path, mnist: Dataset, tmp_path_factory: pytest.TempPathFactory) -> quantize.Result:
    repository = tmp_path_factory.mktemp("int8")
    result = quantize.quantize(
        float_dir, repository, mnist, calibration=quantize.calibration_images(mnist, CALIBRATION)
    )
    assert result.written == repository / "mnist-classifier-int8" / "1", result.reason
    return result


def test_a_good_variant_is_written_with_its_source_gates_and_own_golden_set(
    float_dir: Path, mnist: Dataset, variant: quantize.Result
) -> None:
    source, result = ModelSpec.load(float_dir / SPEC_FILE), variant
    assert result.written is not None
    spec = ModelSpec.load(result.written / SPEC_FILE)
    record = spec.quantization
    assert record is not None and spec.name == "mnist-classifier-int8" and spec.labels == source.labels
    assert (record.source.name, record.source.version) == (source.name, source.version)
    assert record.source.sha256 == hashlib.sha256((float_dir / MODEL_FILE).read_bytes()).hexdigest()
    assert record.quality.passed and record.quality.float_value - record.quality.int8_value <= 0.003
    assert record.speed.passed and record.speed.ratio["32"] >= record.speed.min_ratio
    # quality in model.json is the int8 graph's own, measured again here
    session = evaluate.cpu_session(result.written / MODEL_FILE)
    accuracy = evaluate.classifier_quality(session, mnist.x_test, mnist.y_test, mnist.labels).accuracy
    assert spec.quality is not None and spec.quality.metrics["accuracy"] == accuracy == record.quality.int8_value
    graph = onnx.load(result.written / MODEL_FILE).graph
    assert any(init.data_type == onnx.TensorProto.INT8 for init in graph.initializer)  # int8 weights
    kept = {n.name for n in graph.node}
    assert set(record.kept_float) <= kept
    # its own golden set: recorded hash, its own outputs, not the float's
    assert spec.golden is not None and spec.golden.sha256 == sha256_file(result.written / GOLDEN_FILE)
    assert source.golden is None or spec.golden.sha256 != source.golden.sha256
    data = golden.load(result.written / GOLDEN_FILE)
    batch = prepared_batch(data.encoded, spec.preprocessing, spec.preprocessing.resize, spec.preprocessing.normalize)
    served = {OUTPUT_PROBABILITIES: evaluate.run_batched(session, batch, OUTPUT_PROBABILITIES)}
    assert golden.compare(data, served, spec.golden.tolerance, gpu=False).max_abs_diff < 1e-5
    float_out = evaluate.run_batched(evaluate.cpu_session(float_dir / MODEL_FILE), batch, OUTPUT_PROBABILITIES)
    assert np.abs(float_out - data.expected[OUTPUT_PROBABILITIES]).max() > 1e-5
    assert quantize.report(result) == 0


def test_the_speed_gate_refuses_a_graph_that_is_not_faster(
    float_dir: Path, mnist: Dataset, variant: quantize.Result
) -> None:
    """The gated pair the other way round: the float graph as the candidate is slower than the int8 one."""
    assert variant.written is not None and variant.speed is not None
    fast, slow = evaluate.cpu_session(variant.written / MODEL_FILE), evaluate.cpu_session(float_dir / MODEL_FILE)
    gate = quantize.speed_gate(fast, slow, mnist.x_test[:32], seconds=1.0)
    assert not gate.passed and set(gate.ratio) == {"1", "32"} and gate.pairs >= quantize.MIN_PAIRS
    assert gate.ratio["32"] < 1 < variant.speed.ratio["32"]


def test_fallbacks_keep_the_edges_then_the_input_and_output_sides_in_float(float_dir: Path) -> None:
    model = onnx.load(float_dir / MODEL_FILE)
    nodes = list(model.graph.node)
    weights = [n.name for n in nodes if n.op_type in quantize.WEIGHT_OPS]
    plans = quantize.exclusion_plans(model)
    assert plans[0] == [] and len(plans) == 3
    assert {weights[0], weights[-1]} | {n.name for n in nodes if n.op_type == "Softmax"} == set(plans[1])
    assert set(plans[1]) < set(plans[2]) and nodes[0].name in plans[2]  # the input cast
    assert not set(weights[1:-1]) & set(plans[2])


def test_the_command_is_dispatched_and_documents_its_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert training_cli("quantize", ["--help"]) == 0
    assert "--calibration-samples" in capsys.readouterr().out
