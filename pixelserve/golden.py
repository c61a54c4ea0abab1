"""The golden set beside each exported model: real inputs as files and the outputs the export measured.

Written by the export (pixelserve.training.golden), read by `pixelserve verify` and by the server's quality gate
on load and hot reload. The inputs are encoded files (PNG, or JPEG for photo variants) so a check sends them
through the whole path a client's file takes, decoding and the declared preprocessing included: a changed
normalisation or resize mode fails it just as a swapped graph does.

File layout (numpy .npz, no pickles): ``encoded`` (every file's bytes, concatenated), ``offsets`` (N + 1),
``kinds`` (what each input is: "test", "paper", "photo-4x3", ...), then per task: ``probabilities`` [N, K]
for classifiers; ``reconstruction_error`` [N], ``reconstruction`` (uint8, rounded) [N, H, W, C], ``psnr`` [N]
(of the reconstruction against ``reference``) and ``reference`` (uint8) [N, H, W, C] for autoencoders.
"""

from __future__ import annotations

import hashlib
import io
import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pixelserve.measured import GoldenTolerance

OUTPUT_NAMES = ("probabilities", "reconstruction_error")


@dataclass
class GoldenData:
    encoded: list[bytes]
    kinds: list[str]
    expected: dict[str, np.ndarray]  # probabilities | reconstruction_error, reconstruction (uint8), psnr, reference

    def __len__(self) -> int:
        return len(self.encoded)


def save(path: Path, data: GoldenData) -> str:
    """Write the set; returns its sha256 (recorded in model.json, so a swapped file is noticed too)."""
    offsets = np.cumsum([0, *(len(b) for b in data.encoded)]).astype(np.int64)
    blob = np.frombuffer(b"".join(data.encoded), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, encoded=blob, offsets=offsets, kinds=np.asarray(data.kinds), **data.expected)
    path.write_bytes(buffer.getvalue())
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def load(path: Path) -> GoldenData:
    with np.load(path, allow_pickle=False) as archive:
        offsets, blob = archive["offsets"], archive["encoded"].tobytes()
        encoded = [blob[a:b] for a, b in itertools.pairwise(offsets)]
        expected = {k: archive[k] for k in archive.files if k not in ("encoded", "offsets", "kinds")}
        return GoldenData(encoded, [str(k) for k in archive["kinds"]], expected)


def psnr(reference: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """Per-image PSNR in dB; uint8 references are taken as 0..255, float estimates as 0..1."""
    ref = reference.astype(np.float64) / (255.0 if reference.dtype == np.uint8 else 1.0)
    est = estimate.astype(np.float64) / (255.0 if estimate.dtype == np.uint8 else 1.0)
    mse = ((ref - est) ** 2).reshape(len(ref), -1).mean(axis=1)
    return 10.0 * np.log10(1.0 / np.maximum(mse, 1e-10))


@dataclass
class Agreement:
    """How a served model's answers on its golden set compare with what the export measured."""

    samples: int
    max_abs_diff: float
    top1_agreement: float | None = None
    psnr_delta_db: float | None = None
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        parts = [f"{self.samples} images", f"max |diff| {self.max_abs_diff:.2e}"]
        if self.top1_agreement is not None:
            parts.append(f"top-1 agreement {self.top1_agreement:.1%}")
        if self.psnr_delta_db is not None:
            parts.append(f"PSNR delta {self.psnr_delta_db:.3f} dB")
        return ", ".join(parts) + ("" if self.passed else " - " + "; ".join(self.failures))


def compare(golden: GoldenData, served: dict[str, np.ndarray], tolerance: GoldenTolerance, *, gpu: bool) -> Agreement:
    """`served` holds the model's outputs for the golden inputs (probabilities, or reconstruction and
    reconstruction_error), in order."""
    limit = tolerance.max_abs_diff_gpu if gpu else tolerance.max_abs_diff
    expected = golden.expected
    if "probabilities" in expected:
        want, got = expected["probabilities"], served["probabilities"]
        diff = float(np.abs(want - got).max())
        top1 = float((want.argmax(axis=1) == got.argmax(axis=1)).mean())
        agreement = Agreement(len(want), diff, top1_agreement=top1)
        if top1 < tolerance.top1_agreement:
            agreement.failures.append(f"top-1 agreement {top1:.1%} < {tolerance.top1_agreement:.1%}")
    else:
        reconstruction = np.asarray(served["reconstruction"], dtype=np.float64)
        diff = max(
            float(np.abs(expected["reconstruction_error"] - served["reconstruction_error"]).max()),
            # the stored reconstruction is rounded to 8 bits: half a level of slack
            float(np.abs(expected["reconstruction"] / 255.0 - reconstruction).max()) - 0.5 / 255.0,
        )
        delta = abs(float(psnr(expected["reference"], reconstruction).mean() - expected["psnr"].mean()))
        agreement = Agreement(len(reconstruction), max(diff, 0.0), psnr_delta_db=delta)
        if delta > tolerance.psnr_delta_db:
            agreement.failures.append(f"PSNR changed by {delta:.3f} dB > {tolerance.psnr_delta_db} dB")
    if agreement.max_abs_diff > limit:
        agreement.failures.append(f"outputs differ by {agreement.max_abs_diff:.2e} > {limit:.0e}")
    return agreement
