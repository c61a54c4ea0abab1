"""`pixelserve verify` and the quality gate on the committed models: the golden sets pass in-process and on a
running server over REST and gRPC, and fail when a model's preprocessing is tampered with or its graph swapped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from pixelserve.modelspec import MODEL_FILE, SPEC_FILE, ModelSpec
from pixelserve.service.tools.verify import EXIT_MISMATCH, EXIT_OK, main
from tests.service.rest_support import server_process

COMMITTED = Path(__file__).resolve().parents[2] / "models"
MNIST = "mnist-classifier"


def copy_model(name: str, target: Path) -> Path:
    """One committed model alone in a repository of its own, to tamper with."""
    version = max((COMMITTED / name).iterdir(), key=lambda p: int(p.name))
    copied = target / name / version.name
    shutil.copytree(version, copied)
    return copied


def edit_spec(version_dir: Path, change) -> None:
    spec = json.loads((version_dir / SPEC_FILE).read_text())
    change(spec)
    (version_dir / SPEC_FILE).write_text(json.dumps(spec, indent=2))


def perturb_graph(version_dir: Path) -> None:
    """The same graph with one weight tensor nudged: a swapped or re-trained model behind the same model.json."""
    model = onnx.load(str(version_dir / MODEL_FILE))
    biggest = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    weights = numpy_helper.to_array(biggest).copy()
    weights *= 1.05
    biggest.CopyFrom(numpy_helper.from_array(weights, biggest.name))
    onnx.save(model, str(version_dir / MODEL_FILE))


def run(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


@pytest.mark.slow
def test_every_committed_model_passes_its_golden_set_in_process(capsys) -> None:
    code, out = run("--model-repository", str(COMMITTED), "--device", "cpu", capsys=capsys)
    assert code == EXIT_OK, out
    assert out.count("ok ") >= 5 and "MISMATCH" not in out


@pytest.mark.slow
def test_a_running_server_passes_over_rest_and_grpc(tmp_path: Path, capsys) -> None:
    with server_process(COMMITTED, tmp_path / "server.log") as server:
        code, out = run("--model-repository", str(COMMITTED), "--url", server.url, "--grpc",
                        f"127.0.0.1:{server.grpc_port}", capsys=capsys)  # fmt: skip
    assert code == EXIT_OK, out
    assert out.count("over REST") >= 5 and out.count("over gRPC") >= 5


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (lambda d: edit_spec(d, lambda s: s["preprocessing"].update(normalize="none")), "top-1 agreement"),
        (lambda d: edit_spec(d, lambda s: s["preprocessing"].update(resize="letterbox", normalize="none")), "differ"),
        (perturb_graph, "failed: model.onnx is not the file model.json records (sha256)"),
        (lambda d: (perturb_graph(d), ModelSpec.load(d / SPEC_FILE).write(d)), "differ"),
    ],
    ids=["normalisation-off", "resize-changed", "graph-swapped", "graph-swapped-and-recorded"],
)
def test_tampering_with_preprocessing_or_graph_fails(tmp_path: Path, capsys, tamper, expected: str) -> None:
    version_dir = copy_model(MNIST, tmp_path)
    assert run("--model-repository", str(tmp_path), "--device", "cpu", capsys=capsys)[0] == EXIT_OK
    tamper(version_dir)
    code, out = run("--model-repository", str(tmp_path), "--device", "cpu", capsys=capsys)
    assert code == EXIT_MISMATCH, out
    assert "MISMATCH" in out and expected in out


def test_a_golden_file_that_is_not_the_recorded_one_is_refused(tmp_path: Path, capsys) -> None:
    version_dir = copy_model("mnist-denoiser", tmp_path)
    data = dict(np.load(version_dir / "golden.npz"))
    data["psnr"] = data["psnr"] + 1.0
    np.savez_compressed(version_dir / "golden.npz", **data)
    code = main(["--model-repository", str(tmp_path), "--device", "cpu"])
    assert code != EXIT_OK
    assert "sha256" in capsys.readouterr().err
