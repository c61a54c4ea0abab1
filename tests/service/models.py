"""Tiny but real ONNX models for the service tests, built with onnx.helper (no TensorFlow).

Each writer puts ``model.onnx`` + ``model.json`` into ``<repo>/<name>/<version>/`` exactly as training would,
so tests exercise the real repository scan, validation and onnxruntime sessions. Weights come from a seed,
so two versions built with different seeds give different (observable) outputs.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from pixelserve import anomaly, drift
from pixelserve.measured import DriftBaseline
from pixelserve.modelspec import (
    INPUT_IMAGE,
    MODEL_FILE,
    OUTPUT_ERROR,
    OUTPUT_LATENT,
    OUTPUT_PROBABILITIES,
    OUTPUT_RECONSTRUCTION,
    SPEC_FILE,
    AnomalyThreshold,
    ModelSpec,
    Pairing,
    Preprocessing,
    TensorSpec,
)

OPSET = 18
IR_VERSION = 9  # old enough for every onnxruntime we support, new enough for opset 18
SIZE = 8
LATENT = 4
LABELS = ["zero", "one", "two"]

CLASSIFIER = "tiny-classifier"
CLASSIFIER_RGB = "tiny-classifier-rgb"
AUTOENCODER = "tiny-autoencoder"
DENOISER = "tiny-denoiser"


def _image_input(channels: int) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(INPUT_IMAGE, TensorProto.UINT8, ["batch", SIZE, SIZE, channels])


def _scaled_input_nodes() -> list[onnx.NodeProto]:
    """uint8 image -> float32 in 0..1 (scaling lives inside the graph, as in exported models)."""
    return [
        helper.make_node("Cast", [INPUT_IMAGE], ["x_float"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["x_float", "c255"], ["x"]),
    ]


def _model(nodes, inputs, outputs, initializers) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="pixelserve-tests")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def _const(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(value, name)


def classifier_graph(*, channels: int = 1, seed: int = 0, classes: int = len(LABELS)) -> onnx.ModelProto:
    """image -> /255 -> Flatten -> MatMul + Add -> Softmax -> probabilities [N, classes]."""
    rng = np.random.default_rng(seed)
    features = SIZE * SIZE * channels
    nodes = [
        *_scaled_input_nodes(),
        helper.make_node("Flatten", ["x"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "w"], ["logits_raw"]),
        helper.make_node("Add", ["logits_raw", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], [OUTPUT_PROBABILITIES], axis=-1),
    ]
    inits = [
        _const("c255", np.array(255.0, dtype=np.float32)),
        _const("w", (rng.standard_normal((features, classes)) * 0.3).astype(np.float32)),
        _const("b", (rng.standard_normal(classes) * 0.1).astype(np.float32)),
    ]
    out = helper.make_tensor_value_info(OUTPUT_PROBABILITIES, TensorProto.FLOAT, ["batch", classes])
    return _model(nodes, [_image_input(channels)], [out], inits)


def autoencoder_graph(*, channels: int = 1, seed: int = 1, latent: bool = True) -> onnx.ModelProto:
    """image -> /255 -> encoder MatMul -> latent [N,4] -> decoder MatMul -> Sigmoid -> reconstruction, plus
    reconstruction_error = mean((reconstruction - x)^2) over H, W, C."""
    rng = np.random.default_rng(seed)
    features = SIZE * SIZE * channels
    nodes = [
        *_scaled_input_nodes(),
        helper.make_node("Reshape", ["x", "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w_enc"], ["z_raw"]),
        helper.make_node("Add", ["z_raw", "b_enc"], [OUTPUT_LATENT if latent else "z"]),
        helper.make_node("MatMul", [OUTPUT_LATENT if latent else "z", "w_dec"], ["y_raw"]),
        helper.make_node("Add", ["y_raw", "b_dec"], ["y_logits"]),
        helper.make_node("Sigmoid", ["y_logits"], ["y_flat"]),
        helper.make_node("Reshape", ["y_flat", "image_shape"], [OUTPUT_RECONSTRUCTION]),
        helper.make_node("Sub", [OUTPUT_RECONSTRUCTION, "x"], ["diff"]),
        helper.make_node("Mul", ["diff", "diff"], ["sq"]),
        helper.make_node("ReduceMean", ["sq", "hwc_axes"], [OUTPUT_ERROR], keepdims=0),
    ]
    inits = [
        _const("c255", np.array(255.0, dtype=np.float32)),
        _const("flat_shape", np.array([-1, features], dtype=np.int64)),
        _const("image_shape", np.array([-1, SIZE, SIZE, channels], dtype=np.int64)),
        _const("hwc_axes", np.array([1, 2, 3], dtype=np.int64)),
        _const("w_enc", (rng.standard_normal((features, LATENT)) * 0.3).astype(np.float32)),
        _const("b_enc", np.zeros(LATENT, dtype=np.float32)),
        _const("w_dec", (rng.standard_normal((LATENT, features)) * 0.3).astype(np.float32)),
        _const("b_dec", np.zeros(features, dtype=np.float32)),
    ]
    outputs = [
        helper.make_tensor_value_info(OUTPUT_RECONSTRUCTION, TensorProto.FLOAT, ["batch", SIZE, SIZE, channels]),
        helper.make_tensor_value_info(OUTPUT_ERROR, TensorProto.FLOAT, ["batch"]),
    ]
    if latent:
        outputs.insert(0, helper.make_tensor_value_info(OUTPUT_LATENT, TensorProto.FLOAT, ["batch", LATENT]))
    return _model(nodes, [_image_input(channels)], outputs, inits)


def _preprocessing(channels: int, *, image_output: bool) -> Preprocessing:
    return Preprocessing(
        color_mode="grayscale" if channels == 1 else "rgb",
        height=SIZE,
        width=SIZE,
        in_graph=["cast float32", "scale 1/255"],
        output_range=(0.0, 1.0) if image_output else None,
    )


def _input_spec(channels: int) -> TensorSpec:
    return TensorSpec(name=INPUT_IMAGE, dtype="uint8", shape=[-1, SIZE, SIZE, channels])


def version_dir(repo: Path, name: str, version: int) -> Path:
    path = repo / name / str(version)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_model(repo: Path, model: onnx.ModelProto, spec: ModelSpec) -> Path:
    """Write one version the way training exports it; returns the version directory."""
    path = version_dir(repo, spec.name, spec.version)
    onnx.save(model, str(path / MODEL_FILE))
    spec.dump(path / SPEC_FILE)
    return path


def write_classifier(
    repo: Path,
    name: str = CLASSIFIER,
    version: int = 1,
    *,
    channels: int = 1,
    seed: int = 0,
    ood_model: str | None = AUTOENCODER,
) -> Path:
    spec = ModelSpec(
        name=name,
        version=version,
        task="classify",
        description="tiny test classifier",
        inputs=[_input_spec(channels)],
        outputs=[TensorSpec(name=OUTPUT_PROBABILITIES, dtype="float32", shape=[-1, len(LABELS)])],
        labels=LABELS,
        preprocessing=_preprocessing(channels, image_output=False),
        pairing=Pairing(ood_model=ood_model) if ood_model else None,
    )
    return write_model(repo, classifier_graph(channels=channels, seed=seed), spec)


def calibrate_threshold(model: onnx.ModelProto, channels: int, *, percentile: float = 95.0) -> AnomalyThreshold:
    """The anomaly cut as training computes it: a quantile of the model's own errors on (here random) data."""
    rng = np.random.default_rng(1234)
    images = rng.integers(0, 256, size=(64, SIZE, SIZE, channels), dtype=np.uint8)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (errors,) = session.run([OUTPUT_ERROR], {INPUT_IMAGE: images})
    return AnomalyThreshold(
        percentile=percentile,
        value=float(np.percentile(errors, percentile)),
        false_positive_rate=1 - percentile / 100,
        calibration_samples=len(images),
        calibration_split="random",
    )


def write_autoencoder(
    repo: Path,
    name: str = AUTOENCODER,
    version: int = 1,
    *,
    channels: int = 1,
    seed: int = 1,
    task: str = "reconstruct",
    latent: bool = True,
) -> Path:
    model = autoencoder_graph(channels=channels, seed=seed, latent=latent)
    outputs = [
        TensorSpec(name=OUTPUT_RECONSTRUCTION, dtype="float32", shape=[-1, SIZE, SIZE, channels]),
        TensorSpec(name=OUTPUT_ERROR, dtype="float32", shape=[-1]),
    ]
    if latent:
        outputs.insert(0, TensorSpec(name=OUTPUT_LATENT, dtype="float32", shape=[-1, LATENT]))
    spec = ModelSpec(
        name=name,
        version=version,
        task=task,  # type: ignore[arg-type]
        description=f"tiny test {task} autoencoder",
        inputs=[_input_spec(channels)],
        outputs=outputs,
        preprocessing=_preprocessing(channels, image_output=True),
        anomaly=calibrate_threshold(model, channels) if task == "reconstruct" else None,
    )
    return write_model(repo, model, spec)


def write_denoiser(repo: Path, name: str = DENOISER, version: int = 1, *, channels: int = 1, seed: int = 2) -> Path:
    """A denoiser has the autoencoder's graph without a latent output (so `encode` is unsupported on it)."""
    return write_autoencoder(repo, name, version, channels=channels, seed=seed, task="denoise", latent=False)


def write_broken_onnx(repo: Path, name: str = CLASSIFIER, version: int = 2) -> Path:
    """A version whose model.json is valid but whose model.onnx is not an ONNX file at all."""
    path = write_classifier(repo, name, version)
    (path / MODEL_FILE).write_bytes(b"this is not an onnx protobuf \x00\xff" * 10)
    return path


def write_mismatched_spec(repo: Path, name: str = CLASSIFIER, version: int = 2) -> Path:
    """A version whose model.json promises 5 classes while its graph outputs 3: loading must reject it."""
    path = write_classifier(repo, name, version)
    spec = ModelSpec.load(path / SPEC_FILE)
    labels = [*LABELS, "three", "four"]
    output = TensorSpec(name=OUTPUT_PROBABILITIES, dtype="float32", shape=[-1, len(labels)])
    spec.model_copy(update={"labels": labels, "outputs": [output]}).dump(path / SPEC_FILE)
    ModelSpec.load(path / SPEC_FILE)  # the spec itself is valid; only the graph disagrees
    return path


def build_repository(repo: Path) -> Path:
    """The standard test repository: a grayscale classifier paired with an autoencoder, a denoiser and an
    RGB classifier, each at version 1."""
    repo.mkdir(parents=True, exist_ok=True)
    write_classifier(repo)
    write_autoencoder(repo)
    write_denoiser(repo)
    write_classifier(repo, CLASSIFIER_RGB, channels=3, seed=3, ood_model=None)
    return repo


def reference_session(repo: Path, name: str, version: int = 1) -> ort.InferenceSession:
    """An in-process CPU session on the same file, to compare served numbers against."""
    return ort.InferenceSession(str(repo / name / str(version) / MODEL_FILE), providers=["CPUExecutionProvider"])


def random_images(count: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """uint8 NHWC images at the tiny models' size."""
    return np.random.default_rng(seed).integers(0, 256, size=(count, SIZE, SIZE, channels), dtype=np.uint8)


def encode_image(pixels: np.ndarray, image_format: str = "PNG") -> bytes:
    """HWC (or HW) uint8 pixels -> encoded file bytes, as a client would upload them."""
    array = pixels[..., 0] if pixels.ndim == 3 and pixels.shape[-1] == 1 else pixels
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=image_format)
    return buffer.getvalue()


def add_drift_baseline(repo: Path, name: str, images: np.ndarray, version: int = 1) -> DriftBaseline:
    """Record in model.json the drift baseline export would, with `images` standing in for the test split:
    their pixel histogram, the predicted classes and the served score's deciles (a classifier's from its
    paired autoencoder, which must already be written)."""
    path = repo / name / str(version) / SPEC_FILE
    spec = ModelSpec.load(path)
    predictions, score, scores = None, None, None
    if spec.task == "classify":
        (probabilities,) = reference_session(repo, name, version).run([OUTPUT_PROBABILITIES], {INPUT_IMAGE: images})
        predictions = drift.shares(drift.class_counts(probabilities.argmax(axis=1), len(spec.labels or [])))
        if spec.pairing is not None:
            (errors,) = reference_session(repo, spec.pairing.ood_model).run([OUTPUT_ERROR], {INPUT_IMAGE: images})
            score, scores = "ood_score", anomaly.effective_errors(errors, images)
    else:
        (errors,) = reference_session(repo, name, version).run([OUTPUT_ERROR], {INPUT_IMAGE: images})
        score, scores = "reconstruction_error", anomaly.effective_errors(errors, images)
    baseline = DriftBaseline(
        samples=len(images),
        pixel_histogram=drift.shares(drift.pixel_counts(images)),
        predictions=predictions,
        score=score,
        score_edges=None if scores is None else drift.score_edges(scores),
    )
    spec.model_copy(update={"drift": baseline}).dump(path)
    return baseline
