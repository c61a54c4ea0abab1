"""The quality gate: a new version answers its golden set, on this server's own provider and preprocessing,
before it takes traffic.

Run in the loading thread right after the warm-up: the golden files go through the same decoding and declared
preprocessing as a client's files (`images.decode_image`), then through the new session. A version whose
answers differ beyond its tolerances, or whose golden file is missing or not the one model.json names, is
rejected with the reason; the version already serving keeps serving.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pixelserve import golden
from pixelserve.modelspec import INPUT_IMAGE, ModelSpec, sha256_file

from ..core import images
from ..core.runtime import CPU, ModelRunner
from ..core.types import MAX_IMAGE_PIXELS
from .disk import VersionRejected

QUALITY_GATE = "quality gate"  # how a gate rejection's reason begins (index, logs, metric label)


def load_checked(version_dir: Path, spec: ModelSpec) -> golden.GoldenData | None:
    """The version's golden set (None when it has none), refused when the file is not the one recorded."""
    if spec.golden is None:
        return None
    path = version_dir / spec.golden.file
    if not path.is_file():
        raise VersionRejected(f"{QUALITY_GATE}: golden set {spec.golden.file} is missing")
    if sha256_file(path) != spec.golden.sha256:
        raise VersionRejected(f"{QUALITY_GATE}: {spec.golden.file} is not the golden set model.json records (sha256)")
    return golden.load(path)


def answers(runner: ModelRunner, spec: ModelSpec, data: golden.GoldenData, batch_size: int) -> dict[str, np.ndarray]:
    """The runner's outputs for the golden files, prepared exactly as the server prepares a client's files."""
    batch = np.stack([images.decode_image(b, spec.preprocessing, max_pixels=MAX_IMAGE_PIXELS) for b in data.encoded])
    parts = [runner({INPUT_IMAGE: batch[i : i + batch_size]}) for i in range(0, len(batch), batch_size)]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def check(runner: ModelRunner, spec: ModelSpec, version_dir: Path, batch_size: int) -> golden.Agreement | None:
    """None when the version has no golden set; VersionRejected when it fails its own."""
    data = load_checked(version_dir, spec)
    if data is None or spec.golden is None:
        return None
    agreement = golden.compare(data, answers(runner, spec, data, batch_size), spec.golden.tolerance,
                               gpu=runner.provider != CPU)  # fmt: skip
    if not agreement.passed:
        raise VersionRejected(f"{QUALITY_GATE}: golden set failed on {runner.provider}: {agreement.summary()}")
    return agreement
