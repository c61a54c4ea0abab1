"""What was measured at export so a served model can be trusted, as model.json records it.

- `GoldenSet`: real test images (and real-world variants) with the outputs the export computed, to prove on a
  running server, on the provider it really uses, that the model answers as it did when it was measured.
- `Calibration`: temperature scaling fitted on the validation split, with the calibration error before/after.
- `Detection`: how well a score (reconstruction error) separates normal inputs from foreign or anomalous
  ones: AUROC, AUPR, false-positive rate at 95% true-positive rate, F1 at the threshold.
- `OodReport` (on a classifier's pairing) and the anomaly threshold's detection metrics use it.
- `DriftBaseline`: the input and output statistics live traffic is compared with (drift gauges).
- `Quantization`: an int8 variant's float source and the accuracy and speed gates it passed at export.

Shared by training (which writes it) and the service (which reads it); no framework imports.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

GOLDEN_FILE = "golden.npz"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GoldenTolerance(_Strict):
    max_abs_diff: float = Field(gt=0, description="largest output difference on a CPU provider")
    max_abs_diff_gpu: float = Field(gt=0, description="... on a GPU provider (other kernels, TF32)")
    top1_agreement: float = Field(1.0, ge=0, le=1, description="classifiers: share of images whose top label matches")
    psnr_delta_db: float = Field(0.1, ge=0, description="autoencoders: largest change of PSNR against the reference")


class GoldenSet(_Strict):
    file: str = GOLDEN_FILE
    samples: int = Field(gt=0)
    sha256: str
    kinds: dict[str, int] = Field(description="inputs per kind: plain test images and real-world variants")
    tolerance: GoldenTolerance


class Calibration(_Strict):
    """Probabilities p become p^(1/T) renormalised (softmax of logits / T), inside the graph."""

    method: Literal["temperature"] = "temperature"
    temperature: float = Field(gt=0)
    in_graph: bool = True
    fitted_on: str
    bins: int = Field(15, gt=0)
    before: dict[str, float] = Field(description="ece and nll on the test split before scaling")
    after: dict[str, float] = Field(description="... after")


class Detection(_Strict):
    """A score (higher: more foreign) against normal inputs; foreign inputs are the positives."""

    auroc: float = Field(ge=0, le=1)
    aupr: float = Field(ge=0, le=1)
    fpr_at_95_tpr: float = Field(ge=0, le=1)
    f1: float | None = Field(None, ge=0, le=1, description="at the deployed threshold")
    normal: str = Field(description="what counted as normal, e.g. 'MNIST test split (10000)'")
    foreign: dict[str, int] = Field(description="the foreign or anomalous sets and their sizes")
    per_set_auroc: dict[str, float] = Field(default_factory=dict)


class OodReport(_Strict):
    """The paired autoencoder's reconstruction error as an out-of-distribution flag for the classifier."""

    scorer: str = Field(description="model/version whose reconstruction error is the score")
    threshold: float = Field(ge=0)
    detection: Detection
    flag_rates: dict[str, float] = Field(
        default_factory=dict, description="share flagged on the model's own test split and its real-world variants"
    )


class DriftBaseline(_Strict):
    """Statistics of the test split as served, which live traffic is compared with (population stability)."""

    samples: int = Field(gt=0)
    pixel_histogram: list[float] = Field(description="share of pixels in 16 equal bins over 0..255, model input")
    predictions: list[float] | None = Field(None, description="share of each class among the test predictions")
    score: str | None = Field(None, description="the score whose quantiles follow: ood_score or reconstruction_error")
    score_edges: list[float] | None = Field(None, description="decile edges of the score on the test split")


class QuantizationSource(_Strict):
    """The float version an int8 variant was made from, pinned by the hash of its graph."""

    name: str
    version: int = Field(gt=0)
    sha256: str = Field(description="of the float version's model.onnx")


class QualityGate(_Strict):
    """Float and int8 measured on the same test images; the variant may lose at most `max_loss`."""

    metric: str = Field(description="accuracy (classifiers) or the worst PSNR in dB (autoencoders)")
    samples: int = Field(gt=0)
    float_value: float
    int8_value: float
    max_loss: float = Field(ge=0)
    passed: bool


class SpeedGate(_Strict):
    """Both graphs in one process on CPUExecutionProvider, runs interleaved; `ratio` per batch size is the median
    over run pairs of float time / int8 time, and the gate reads it at `batch` (what the server forms)."""

    provider: str = "CPUExecutionProvider"
    cpu: str
    threads: int = Field(ge=0, description="intra-op threads; 0: onnxruntime's default, as the server's")
    pairs: int = Field(gt=0, description="interleaved float and int8 runs per batch size (the fewest)")
    float_images_per_s: dict[str, float] = Field(description="batch size / median run time")
    int8_images_per_s: dict[str, float]
    ratio: dict[str, float]
    batch: int = Field(gt=0)
    min_ratio: float = Field(gt=0)
    passed: bool


class Quantization(_Strict):
    """How an int8 variant was made from its float version, and the gates it passed at export."""

    method: Literal["onnxruntime.quantize_static"] = "onnxruntime.quantize_static"
    format: Literal["QDQ"] = "QDQ"
    per_channel: bool = True
    activation_type: str = "uint8"
    weight_type: str = "int8"
    calibration: str = Field(description="what the activation ranges were fitted on, e.g. '512 train images'")
    kept_float: list[str] = Field(default_factory=list, description="nodes left in float (nodes_to_exclude)")
    source: QuantizationSource
    quality: QualityGate
    speed: SpeedGate
