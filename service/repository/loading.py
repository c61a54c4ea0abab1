"""Turning one version directory into a checked, warmed session, or a precise reason why not.

model.json is a promise about the graph; adapters and clients rely on it (metadata, tensor names, shapes), so
a version whose graph disagrees with its model.json is refused rather than served half-right.
"""

from __future__ import annotations

import logging
from pathlib import Path

import onnxruntime as ort

from pixelserve.modelspec import MODEL_FILE, SPEC_FILE, ModelSpec, TensorSpec

from ..core.runtime import ModelRunner, SessionFactory, warm_up
from ..errors import ModelNotReady
from ..settings import Settings
from . import gate
from .disk import VersionRejected

log = logging.getLogger(__name__)

ORT_DTYPES = {
    "tensor(uint8)": "uint8",
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
}


def _check_tensor(kind: str, declared: TensorSpec, actual: ort.NodeArg) -> None:
    dtype = ORT_DTYPES.get(actual.type, actual.type)
    if dtype != declared.dtype:
        raise VersionRejected(f"{kind} {declared.name!r}: {SPEC_FILE} says {declared.dtype}, graph has {dtype}")
    shape = list(actual.shape)
    if len(shape) != len(declared.shape):
        raise VersionRejected(f"{kind} {declared.name!r}: {SPEC_FILE} says shape {declared.shape}, graph has {shape}")
    if isinstance(shape[0], int):
        raise VersionRejected(f"{kind} {declared.name!r}: the graph's batch axis is fixed at {shape[0]}")
    for want, have in zip(declared.shape[1:], shape[1:], strict=True):
        if isinstance(have, int) and want not in (-1, have):
            raise VersionRejected(
                f"{kind} {declared.name!r}: {SPEC_FILE} says shape {declared.shape}, graph has {shape}"
            )


def check_graph(spec: ModelSpec, session: ort.InferenceSession) -> None:
    """Inputs and outputs of the graph must be exactly those model.json declares."""
    for kind, declared, actual in (
        ("input", spec.inputs, session.get_inputs()),
        ("output", spec.outputs, session.get_outputs()),
    ):
        by_name = {a.name: a for a in actual}
        if set(by_name) != {d.name for d in declared}:
            raise VersionRejected(
                f"{kind}s: {SPEC_FILE} declares {sorted(d.name for d in declared)}, graph has {sorted(by_name)}"
            )
        for d in declared:
            _check_tensor(kind, d, by_name[d.name])


def _load_instance(path: Path, spec: ModelSpec, factory: SessionFactory, settings: Settings) -> ModelRunner:
    try:
        runner = factory.create(path / MODEL_FILE)
    except ModelNotReady as exc:  # the requested GPU is not what runs
        raise VersionRejected(exc.message) from exc
    except Exception as exc:  # onnxruntime raises its own types for unreadable or invalid graphs
        raise VersionRejected(f"onnxruntime cannot load {MODEL_FILE}: {exc}") from exc
    check_graph(spec, runner.session)
    if settings.warmup:
        try:
            warm_up(runner, spec, settings.max_batch_size)
        except Exception as exc:
            raise VersionRejected(f"warm-up run failed: {exc}") from exc
    return runner


def load_version(path: Path, spec: ModelSpec, factory: SessionFactory, settings: Settings) -> list[ModelRunner]:
    """Blocking (run it in a thread): `settings.instances` sessions, each checked against model.json and
    warmed up, the first through the quality gate (its golden set) unless the gate is off. Raises
    VersionRejected with the reason."""
    runners = [_load_instance(path, spec, factory, settings) for _ in range(settings.instances)]
    if settings.quality_gate:
        agreement = gate.check(runners[0], spec, path, settings.max_batch_size)
        if agreement is not None:
            log.info("quality gate: %s version %d on %s: %s", spec.name, spec.version, runners[0].provider,
                     agreement.summary())  # fmt: skip
    return runners
