"""The model repository contract: what `model.json` holds beside each `model.onnx`.

Training writes it, the service reads it; neither imports the other, both import this.
Layout: ``<repository>/<name>/<version>/{model.onnx, model.json, *.png}``.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pixelserve.measured import Calibration, Detection, DriftBaseline, GoldenSet, OodReport, Quantization

SCHEMA_VERSION = 1
MODEL_FILE = "model.onnx"
SPEC_FILE = "model.json"

Task = Literal["classify", "denoise", "reconstruct"]
DType = Literal["uint8", "float32", "float16", "int64", "int32"]

# Names that may appear in a URL, a path and a metric label: no dots first, no slashes.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,127}$")
# A file of a version directory listed in model.json `files`: a plain name, never a path.
FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")

# Stable tensor names across every exported model.
INPUT_IMAGE = "image"
OUTPUT_PROBABILITIES = "probabilities"
OUTPUT_RECONSTRUCTION = "reconstruction"
OUTPUT_ERROR = "reconstruction_error"
OUTPUT_LATENT = "latent"
OUTPUT_ANOMALY_MAP = "anomaly_map"  # per-pixel squared error, mean over channels: [N, H, W]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorSpec(_Strict):
    """One graph input or output; ``-1`` marks a dynamic axis (the batch)."""

    name: str
    dtype: DType
    shape: list[int]

    @field_validator("shape")
    @classmethod
    def _dims(cls, shape: list[int]) -> list[int]:
        if any(d == 0 or d < -1 for d in shape):
            raise ValueError(f"dimensions must be positive or -1 (dynamic), got {shape}")
        return shape


class Preprocessing(_Strict):
    """How a decoded image becomes the graph's input. Scaling happens inside the graph; what cannot be in the
    graph (the geometry of an image of any size, MNIST-style digit normalisation) is declared here and applied
    by the server (pixelserve.imaging), the same for every protocol and for batch scoring."""

    layout: Literal["NHWC"] = "NHWC"
    color_mode: Literal["grayscale", "rgb"]
    height: int = Field(gt=0)
    width: int = Field(gt=0)
    resize: Literal["stretch", "center-crop", "letterbox"] = Field(
        "stretch", description="how an image of another size or shape is fitted; a request may override it"
    )
    normalize: Literal["none", "digit"] = Field(
        "none", description="digit: MNIST's own normalisation (light background inverted, ink fitted and centred)"
    )
    input_range: tuple[int, int] = (0, 255)
    in_graph: list[str] = Field(default_factory=list, description="steps the graph applies itself, e.g. 'scale 1/255'")
    output_range: tuple[float, float] | None = Field(
        default=None, description="value range of image outputs (reconstruction), e.g. (0, 1)"
    )

    @property
    def channels(self) -> int:
        return 1 if self.color_mode == "grayscale" else 3


class Quality(_Strict):
    """Measured on the real test split; metric names are task specific."""

    dataset: str
    split: str = "test"
    samples: int = Field(gt=0)
    metrics: dict[str, float]
    per_class: dict[str, float] | None = None
    variants: dict[str, float] | None = Field(
        default=None, description="accuracy on real-world variants of the test split (scans, photos), as served"
    )
    notes: str | None = None


class AnomalyThreshold(_Strict):
    """A reconstruction-error cut calibrated on held-out in-distribution data.

    `mode` says how `value` was chosen: a percentile of normal errors, the error that gives a target
    false-positive rate on normal data, or the best F1 on a labelled set (normal and known anomalies). The
    normalised score a client sees is error / (error + value): 0 for a perfect reconstruction, 0.5 at the
    threshold, approaching 1 far beyond it.
    """

    metric: Literal["mse"] = "mse"
    mode: Literal["percentile", "fpr", "f1"] = "percentile"
    percentile: float = Field(gt=0, lt=100, description="where the threshold sits among normal errors")
    target_fpr: float | None = Field(None, gt=0, lt=1)
    value: float = Field(ge=0)
    false_positive_rate: float = Field(ge=0, le=1, description="measured on the test split")
    calibration_samples: int = Field(gt=0)
    calibration_split: str
    detection: Detection | None = Field(None, description="against a known-anomaly set built from real data")


class Parity(_Strict):
    """onnxruntime against Keras on real test images."""

    samples: int = Field(gt=0)
    max_abs_diff: float = Field(ge=0)
    tolerance: float = Field(gt=0)
    passed: bool


class DatasetInfo(_Strict):
    name: str
    source: str
    sha256: str


class Pairing(_Strict):
    """A classifier paired with an autoencoder that scores inputs as out-of-distribution."""

    ood_model: str
    ood_version: int | None = None
    ood: OodReport | None = Field(None, description="how well the flag separates foreign inputs, as measured")


class ModelSpec(_Strict):
    schema_version: Literal[1] = SCHEMA_VERSION
    name: str
    version: int = Field(gt=0)
    task: Task
    description: str = ""
    inputs: list[TensorSpec] = Field(min_length=1)
    outputs: list[TensorSpec] = Field(min_length=1)
    labels: list[str] | None = None
    preprocessing: Preprocessing
    quality: Quality | None = None
    anomaly: AnomalyThreshold | None = None
    pairing: Pairing | None = None
    parity: Parity | None = None
    calibration: Calibration | None = None
    golden: GoldenSet | None = None
    drift: DriftBaseline | None = None
    quantization: Quantization | None = Field(None, description="int8 variants: the float source and the gates")
    dataset: DatasetInfo | None = None
    recipe: dict[str, Any] = Field(default_factory=dict)
    frameworks: dict[str, str] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict, description="time, hardware, epochs run")
    parameters: int | None = None
    created_at: str | None = None
    artifacts: list[str] = Field(default_factory=list, description="plots stored beside the model")
    files: dict[str, str] = Field(
        default_factory=dict,
        description="sha256 of every other file of the version: a server checks them before loading, and a version "
        "in an object store counts as uploaded only once every one is there and matches",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not NAME_PATTERN.match(name):
            raise ValueError(f"model name {name!r} must match {NAME_PATTERN.pattern}")
        return name

    @field_validator("files")
    @classmethod
    def _files(cls, files: dict[str, str]) -> dict[str, str]:
        for name, digest in files.items():
            if not FILE_NAME.match(name) or name == SPEC_FILE:
                raise ValueError(f"files: {name!r} is not a file of the version beside {SPEC_FILE}")
            if not SHA256.match(digest):
                raise ValueError(f"files: {name}: {digest!r} is not a lowercase hex sha256")
        if files and MODEL_FILE not in files:
            raise ValueError(f"files must include {MODEL_FILE}")
        return files

    @model_validator(mode="after")
    def _task_outputs(self) -> ModelSpec:
        names = {t.name for t in self.outputs}
        if len(self.inputs) != 1 or self.inputs[0].name != INPUT_IMAGE:
            raise ValueError(f"a model takes one input named {INPUT_IMAGE!r}")
        if self.task == "classify":
            if OUTPUT_PROBABILITIES not in names:
                raise ValueError(f"a classify model must output {OUTPUT_PROBABILITIES!r}")
            if not self.labels:
                raise ValueError("a classify model needs labels")
            width = self.output(OUTPUT_PROBABILITIES).shape[-1]
            if width != len(self.labels):
                raise ValueError(f"{width} probabilities but {len(self.labels)} labels")
        elif OUTPUT_RECONSTRUCTION not in names:
            raise ValueError(f"a {self.task} model must output {OUTPUT_RECONSTRUCTION!r}")
        shape = self.inputs[0].shape
        pre = self.preprocessing
        if shape[1:] != [pre.height, pre.width, pre.channels]:
            raise ValueError(
                f"input shape {shape} does not match preprocessing {pre.height}x{pre.width}x{pre.channels}"
            )
        return self

    @property
    def input(self) -> TensorSpec:
        return self.inputs[0]

    def output(self, name: str) -> TensorSpec:
        for t in self.outputs:
            if t.name == name:
                return t
        raise KeyError(name)

    def has_output(self, name: str) -> bool:
        return any(t.name == name for t in self.outputs)

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps(self.model_dump(mode="json"), indent=2) + "\n")

    def write(self, version_dir: Path) -> ModelSpec:
        """model.json into a version directory, its `files` digests taken from the directory as it is now: the
        last write of a version, once every other file is final. Returns the spec as written."""
        spec = self.model_copy(update={"files": file_digests(version_dir)})
        spec.dump(version_dir / SPEC_FILE)
        return spec

    @classmethod
    def load(cls, path: Path) -> ModelSpec:
        return cls.model_validate_json(path.read_text())


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def file_digests(version_dir: Path) -> dict[str, str]:
    """`files` for a version directory: every regular file but model.json, by name."""
    return {
        p.name: sha256_file(p)
        for p in sorted(version_dir.iterdir())
        if p.is_file() and not p.is_symlink() and p.name != SPEC_FILE and FILE_NAME.match(p.name)
    }


def json_schema() -> dict[str, Any]:
    """The JSON Schema of model.json, for tools outside Python."""
    return ModelSpec.model_json_schema()
