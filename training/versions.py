"""Version directories of a model repository (``models/<name>/<version>/``), as export, quantize and the trust
steps number and find them. Kept free of TensorFlow so `pixelserve quantize` starts without it."""

from __future__ import annotations

from pathlib import Path

from pixelserve.modelspec import SPEC_FILE


def next_version(model_dir: Path) -> int:
    """One above the highest numbered version directory of ``models/<name>`` (1 for a new model)."""
    versions = [int(p.name) for p in model_dir.glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def latest_version(model_dir: Path) -> Path:
    """``models/<name>`` -> its highest numbered version with a model.json; a version directory as it is."""
    if (model_dir / SPEC_FILE).exists():
        return model_dir
    versions = sorted(
        (p.parent for p in model_dir.glob(f"*/{SPEC_FILE}") if p.parent.name.isdigit()), key=lambda p: int(p.name)
    )
    if not versions:
        raise FileNotFoundError(f"no model version with {SPEC_FILE} in {model_dir}")
    return versions[-1]
