"""int8 variants of an exported float model, served beside it as ``<name>-int8``.

onnxruntime static quantisation (QDQ, per-channel int8 weights, uint8 activations whose ranges are fitted on
training images of the recipe's dataset). A variant is only worth serving if it is as good and faster, so two
gates are measured at export and recorded in its model.json, and a variant that fails either is not written:

- quality: float and int8 on the same real test images; at most 0.3 accuracy points lost (classifiers) or
  0.3 dB PSNR (autoencoders). Full quantisation is tried first; if it loses too much, the edges of the graph
  (first and last weight layer, Softmax), then everything before the first and after the last weight layer
  (cast/scale/normalise, the test-time-augmentation views and their average) are kept in float.
- speed: both graphs in one process on CPUExecutionProvider with the server's session options, their runs
  interleaved so load from other processes hits both alike; the median float/int8 time ratio at batch 32,
  the server's default --max-batch-size (what its batcher forms under load), must be at least 1.1.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from pixelserve.measured import GoldenTolerance, QualityGate, Quantization, QuantizationSource, SpeedGate
from pixelserve.modelspec import INPUT_IMAGE, MODEL_FILE, SPEC_FILE, ModelSpec, Quality

from . import evaluate
from .data import Dataset, file_sha256, load_dataset
from .golden import write_golden_set
from .machine import cpu_name
from .recipes import Recipe
from .versions import latest_version, next_version

log = logging.getLogger(__name__)

SUFFIX = "-int8"
MAX_ACCURACY_LOSS = 0.003  # 0.3 points
MAX_PSNR_LOSS_DB = 0.3
MIN_SPEEDUP = 1.1
SPEED_BATCH = 32  # the server's default max_batch_size
SPEED_BATCHES = (1, SPEED_BATCH)
SPEED_SECONDS = 3.0  # per batch size
WARMUP_RUNS = 3
MIN_PAIRS = 20
CALIBRATION_SAMPLES = 512
CALIBRATION_BATCH = 32
WEIGHT_OPS = ("Conv", "MatMul", "Gemm", "ConvTranspose")
# Int8 kernels differ between CPUs (AVX2 without VNNI saturates some products) and GPUs run QDQ graphs other ways,
# so the variant's golden set allows what rounding one activation step differently can move.
TOLERANCE = GoldenTolerance(max_abs_diff=0.05, max_abs_diff_gpu=0.05, top1_agreement=0.98, psnr_delta_db=0.3)


class _Images(CalibrationDataReader):
    """Feeds calibration images to quantize_static as the server would: uint8 NHWC batches named "image"."""

    def __init__(self, images: np.ndarray) -> None:
        self._batches: Iterator[np.ndarray] = iter(np.array_split(images, max(1, len(images) // CALIBRATION_BATCH)))

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_IMAGE: batch}


def calibration_images(data: Dataset, count: int = CALIBRATION_SAMPLES, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return data.x_train[rng.choice(len(data.x_train), size=min(count, len(data.x_train)), replace=False)]


def exclusion_plans(model: onnx.ModelProto) -> list[list[str]]:
    """Nodes to keep in float, one list per try, each a superset of the last: none; the first and last weight
    layer and Softmax; everything before the first and after the last weight layer (input scaling, TTA views
    and their average)."""
    nodes = list(model.graph.node)
    weights = [i for i, n in enumerate(nodes) if n.op_type in WEIGHT_OPS]
    if not weights:
        return [[]]
    first, last = weights[0], weights[-1]
    edges = [nodes[first].name, nodes[last].name] + [n.name for n in nodes if n.op_type == "Softmax"]
    sides = [n.name for i, n in enumerate(nodes) if i < first or i > last]
    return [[], list(dict.fromkeys(edges)), list(dict.fromkeys(edges + sides))]


def _session(path: Path) -> ort.InferenceSession:
    """The server's CPU session options (no spinning between runs), so the speed gate measures what it serves."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class Measured:
    """One graph on the test images: every metric model.json records, and those the quality gate compares."""

    metrics: dict[str, float]
    per_class: dict[str, float] | None
    gated: dict[str, float]  # accuracy, or PSNR at each noise level


def measure(session: ort.InferenceSession, spec: ModelSpec, recipe: Recipe, data: Dataset) -> Measured:
    metrics, classifier = evaluate.task_metrics(
        session, spec.task, data.x_test, data.y_test, data.labels, recipe.sigmas, recipe.seed
    )
    if spec.task == "classify":
        gated = {"accuracy": metrics["accuracy"]}
    else:
        gated = {k: v for k, v in metrics.items() if k.startswith("psnr") and not k.startswith("psnr_of")}
    return Measured(metrics, classifier.per_class if classifier else None, gated)


def quality_gate(task: str, before: Measured, after: Measured, samples: int) -> QualityGate:
    """The worst loss over the gated metrics decides."""
    worst = max(before.gated, key=lambda k: before.gated[k] - after.gated[k])
    max_loss = MAX_ACCURACY_LOSS if task == "classify" else MAX_PSNR_LOSS_DB
    loss = before.gated[worst] - after.gated[worst]
    return QualityGate(metric=worst, samples=samples, float_value=before.gated[worst],
                       int8_value=after.gated[worst], max_loss=max_loss, passed=loss <= max_loss + 1e-12)  # fmt: skip


def _timed(session: ort.InferenceSession, batch: np.ndarray) -> float:
    start = time.perf_counter()
    session.run(None, {INPUT_IMAGE: batch})
    return time.perf_counter() - start


def speed_gate(
    float_s: ort.InferenceSession,
    int8_s: ort.InferenceSession,
    images: np.ndarray,
    *,
    seconds: float = SPEED_SECONDS,
    min_ratio: float = MIN_SPEEDUP,
) -> SpeedGate:
    """Runs interleaved one by one (the order flipped each pair) for `seconds` per batch size, so a burst of
    load from another process slows both alike; the ratio is the median over pairs of float time / int8 time,
    throughput is the batch size over each graph's median time."""
    measured: dict[str, dict[str, float]] = {"float": {}, "int8": {}, "ratio": {}}
    counts = []
    for size in SPEED_BATCHES:
        batch = np.ascontiguousarray(np.resize(images, (size, *images.shape[1:])))
        for _ in range(WARMUP_RUNS):  # first runs allocate
            _timed(float_s, batch), _timed(int8_s, batch)
        pairs: list[tuple[float, float]] = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(pairs) < MIN_PAIRS:
            if len(pairs) % 2:
                int8_t, float_t = _timed(int8_s, batch), _timed(float_s, batch)
            else:
                float_t, int8_t = _timed(float_s, batch), _timed(int8_s, batch)
            pairs.append((float_t, int8_t))
        key = str(size)
        measured["float"][key] = round(size / statistics.median(p[0] for p in pairs), 1)
        measured["int8"][key] = round(size / statistics.median(p[1] for p in pairs), 1)
        measured["ratio"][key] = round(statistics.median(p[0] / p[1] for p in pairs), 3)
        counts.append(len(pairs))
    ratio = measured["ratio"][str(SPEED_BATCH)]
    return SpeedGate(
        cpu=cpu_name(),
        threads=0,
        pairs=min(counts),
        float_images_per_s=measured["float"],
        int8_images_per_s=measured["int8"],
        ratio=measured["ratio"],
        batch=SPEED_BATCH,
        min_ratio=min_ratio,
        passed=ratio >= min_ratio,
    )


@dataclass
class Result:
    """What `quantize` did: the variant's directory when both gates passed, else why not."""

    written: Path | None = None
    reason: str = ""
    tries: list[tuple[list[str], QualityGate]] = field(default_factory=list)
    speed: SpeedGate | None = None
    spec: ModelSpec | None = None


def _quantize(prepared: Path, out: Path, calibration: np.ndarray, exclude: list[str]) -> None:
    quantize_static(
        str(prepared),
        str(out),
        _Images(calibration),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=exclude,
    )


def _prepare(source: Path, target: Path) -> Path:
    """onnxruntime's recommended pre-processing (shape inference, constant folding); the raw graph if it fails."""
    try:
        quant_pre_process(str(source), str(target), skip_symbolic_shape=True)
        return target
    except Exception as exc:  # an exotic graph: quantising without it still works, only less fused
        log.warning("quant_pre_process failed (%s); quantising the graph as exported", exc)
        return source


def quantize(
    model_dir: Path,
    repository: Path,
    data: Dataset,
    *,
    calibration: np.ndarray | None = None,
    version: int | None = None,
    min_speedup: float = MIN_SPEEDUP,
    speed_seconds: float = SPEED_SECONDS,
) -> Result:
    """Make, gate and (when both gates pass) write ``<repository>/<name>-int8/<version>``."""
    spec = ModelSpec.load(model_dir / SPEC_FILE)
    recipe = Recipe.from_dict(spec.recipe)
    calibration = calibration_images(data, seed=recipe.seed) if calibration is None else calibration
    source = model_dir / MODEL_FILE
    result = Result()
    with tempfile.TemporaryDirectory(prefix="pixelserve-int8-") as tmp:
        staging = Path(tmp) / "model"
        staging.mkdir()
        prepared = _prepare(source, Path(tmp) / "prepared.onnx")
        float_s = _session(source)
        before = measure(float_s, spec, recipe, data)
        for exclude in exclusion_plans(onnx.load(str(prepared))):
            _quantize(prepared, staging / MODEL_FILE, calibration, exclude)
            int8_s = _session(staging / MODEL_FILE)
            measured = measure(int8_s, spec, recipe, data)
            gate = quality_gate(spec.task, before, measured, len(data.x_test))
            result.tries.append((exclude, gate))
            log.info(
                "int8 with %d nodes in float: %s %.4f -> %.4f",
                len(exclude),
                gate.metric,
                gate.float_value,
                gate.int8_value,
            )
            if gate.passed:
                break
        else:
            result.reason = f"quality gate: {gate.metric} {gate.float_value:.4f} -> {gate.int8_value:.4f} loses more "
            result.reason += f"than {gate.max_loss} even with {len(exclude)} nodes in float"
            return result
        result.speed = speed_gate(
            float_s, int8_s, data.x_test[:SPEED_BATCH], seconds=speed_seconds, min_ratio=min_speedup
        )
        if not result.speed.passed:
            ratio = result.speed.ratio[str(SPEED_BATCH)]
            result.reason = f"speed gate: int8 is {ratio:.2f}x as fast as float at batch {SPEED_BATCH} < {min_speedup}x"
            return result
        record = Quantization(
            calibration=f"{len(calibration)} {recipe.dataset} train images",
            kept_float=exclude,
            source=QuantizationSource(name=spec.name, version=spec.version, sha256=file_sha256(source)),
            quality=gate,
            speed=result.speed,
        )
        variant = _variant_spec(
            spec, record, data, measured, version or next_version(repository / (spec.name + SUFFIX))
        )
        golden = write_golden_set(variant, int8_s, data, staging, sigma=recipe.noise_sigma, seed=recipe.seed)
        result.spec = variant.model_copy(update={"golden": golden.model_copy(update={"tolerance": TOLERANCE})})
        target = repository / variant.name / str(variant.version)
        if target.exists():
            raise FileExistsError(f"{target} already exists; pass another --version")
        result.spec = result.spec.write(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), str(target))
        result.written = target
    return result


def _variant_spec(spec: ModelSpec, record: Quantization, data: Dataset, measured: Measured, version: int) -> ModelSpec:
    """The float's contract with its own measurements: what was measured on the float graph (calibration,
    anomaly threshold, OOD report, drift, parity, golden set, plots) is left out rather than claimed."""
    quality = Quality(
        dataset=spec.quality.dataset if spec.quality else data.name,
        samples=len(data.x_test),
        metrics=measured.metrics,
        per_class=measured.per_class,
    )
    pairing = spec.pairing.model_copy(update={"ood": None}) if spec.pairing else None
    source = record.source
    return spec.model_copy(
        update={
            "name": spec.name + SUFFIX,
            "version": version,
            "description": f"int8 (QDQ) of {source.name}/{source.version}. {spec.description}",
            "quality": quality,
            "quantization": record,
            "anomaly": None,
            "pairing": pairing,
            "parity": None,
            "calibration": None,
            "golden": None,
            "drift": None,
            "frameworks": {**spec.frameworks, "onnxruntime": ort.__version__, "onnx": onnx.__version__},
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "artifacts": [],
        }
    )


def command(model_dir: Path, data_dir: Path | None, out: Path | None, version: int | None, samples: int) -> int:
    """`pixelserve quantize`: the latest version of a model directory, its recipe's dataset, the float's own
    repository unless `out` names another."""
    model_dir = latest_version(model_dir)
    data = load_dataset(Recipe.from_dict(ModelSpec.load(model_dir / SPEC_FILE).recipe).dataset, data_dir)
    repository = out or model_dir.parent.parent
    calibration = calibration_images(data, samples)
    return report(quantize(model_dir, repository, data, calibration=calibration, version=version))


def report(result: Result) -> int:
    """Print every try, the gates and the verdict; the exit status: 0 written, 1 refused."""
    for exclude, gate in result.tries:
        kept = ", ".join(exclude) if exclude else "nothing"
        print(
            f"try: kept float: {kept}\n  {gate.metric} float {gate.float_value:.4f} int8 {gate.int8_value:.4f} "
            f"on {gate.samples} test images (max loss {gate.max_loss}): {'pass' if gate.passed else 'FAIL'}"
        )
    if result.speed:
        s = result.speed
        for size in s.ratio:
            print(
                f"speed @ batch {size}: float {s.float_images_per_s[size]:.0f}/s "
                f"int8 {s.int8_images_per_s[size]:.0f}/s ratio {s.ratio[size]:.2f}x"
            )
        print(f"speed gate (>= {s.min_ratio}x at batch {s.batch}): {'pass' if s.passed else 'FAIL'}")
    if result.written is None:
        print(f"not written: {result.reason}")
        return 1
    print(f"model: {result.written}")
    return 0
