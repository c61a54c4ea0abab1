"""`pixelserve verify`: the served model answers its golden set as it did when it was measured.

    pixelserve verify --model-repository models                       # in-process, through the core
    pixelserve verify --url http://HOST:8000 --grpc HOST:8001          # a running server, over REST and gRPC

The golden files (model.json `golden`) go as encoded images (V2 BYTES) through the full path: decoding, the
declared preprocessing, the batcher and onnxruntime on whatever provider serves. Per model and transport it
reports the agreement (top-1 match, largest output difference, PSNR change) and the provider, and exits 1
when any answer is outside the version's tolerances (or a served version is not the one measured), 2 for bad
usage, 0 when everything agrees.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from pixelserve import golden
from pixelserve.commandline import CommandSettings, parse
from pixelserve.modelspec import SPEC_FILE, ModelSpec

from ..core.runtime import CPU
from ..core.types import ImageInputs, ModelRef
from ..errors import ModelNotReady
from ..repository.gate import load_checked

EXIT_OK, EXIT_MISMATCH, EXIT_USAGE = 0, 1, 2
OUTPUTS = ("probabilities", "reconstruction", "reconstruction_error")


class VerifySettings(CommandSettings):
    """Check served models against their golden sets (in-process, or a running server with --url/--grpc)."""

    model_config = SettingsConfigDict(cli_prog_name="pixelserve verify")

    model_repository: Path = Field(
        Path("models"), description="where the golden sets are (and, in-process, the models)"
    )
    url: str | None = Field(None, description="REST base URL of a running server, e.g. http://127.0.0.1:8000")
    grpc: str | None = Field(None, description="HOST:PORT (or grpcs://HOST:PORT) of the same server's gRPC")
    model: str | None = Field(None, description="only this model (default: every model with a golden set)")
    api_key: SecretStr | None = Field(None, description="the server's API key")
    device: str = Field("auto", description="in-process: auto, cpu, cuda or tensorrt")
    batch_size: int = Field(64, ge=1, description="golden images per request")
    timeout_s: float = Field(60.0, gt=0)


@dataclass
class Check:
    model: str
    version: int
    transport: str
    provider: str
    agreement: golden.Agreement | None
    problem: str = ""

    @property
    def passed(self) -> bool:
        return not self.problem and self.agreement is not None and self.agreement.passed

    def line(self) -> str:
        verdict = "ok" if self.passed else "MISMATCH"
        detail = self.problem or (self.agreement.summary() if self.agreement else "")
        return f"{verdict:8} {self.model}/{self.version} over {self.transport} on {self.provider or '?'}: {detail}"


def golden_models(repository: Path, only: str | None) -> list[tuple[ModelSpec, golden.GoldenData]]:
    """The newest version of each model that has a golden set (the version a default server serves)."""
    found: dict[str, tuple[ModelSpec, Path]] = {}
    for path in sorted(repository.glob(f"*/*/{SPEC_FILE}")):
        spec = ModelSpec.load(path)
        if spec.golden is None or (only and spec.name != only):
            continue
        if spec.name not in found or spec.version > found[spec.name][0].version:
            found[spec.name] = (spec, path.parent)
    return [(spec, load_checked(folder, spec)) for spec, folder in found.values()]  # type: ignore[misc]


def _batches(data: golden.GoldenData, size: int) -> list[list[bytes]]:
    return [data.encoded[i : i + size] for i in range(0, len(data.encoded), size)]


def _joined(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _judge(
    spec: ModelSpec,
    data: golden.GoldenData,
    transport: str,
    version: int,
    provider: str,
    outputs: dict[str, np.ndarray],
) -> Check:
    if version != spec.version:
        problem = f"the server serves version {version}, the golden set is version {spec.version}'s"
        return Check(spec.name, spec.version, transport, provider, None, problem)
    assert spec.golden is not None
    agreement = golden.compare(data, outputs, spec.golden.tolerance, gpu=bool(provider) and provider != CPU)
    return Check(spec.name, spec.version, transport, provider, agreement)


async def verify_in_process(settings: VerifySettings) -> list[Check]:
    """Through a core of our own: every golden file as an encoded image through decode, batch and runtime."""
    from ..observe.metrics import Metrics
    from ..settings import Settings
    from ..wiring import build_core

    models = golden_models(settings.model_repository, settings.model)
    server = Settings(model_repository=settings.model_repository, device=settings.device, hot_reload=False,
                      quality_gate=False, max_batch_images=max(256, settings.batch_size))  # fmt: skip
    core = await build_core(server, Metrics())
    checks = []
    try:
        for spec, data in models:
            ref = ModelRef(spec.name)
            try:
                provider = core.model_info(ref).provider
            except ModelNotReady as exc:  # refused on load: files not the ones model.json records, bad graph
                checks.append(Check(spec.name, spec.version, "in-process", "", None, f"refused: {exc.message}"))
                continue
            parts, version = [], 0
            for chunk in _batches(data, settings.batch_size):
                result = await core.infer(ref, ImageInputs(encoded=chunk), [o for o in OUTPUTS if spec.has_output(o)])
                parts.append(result.outputs)
                version = result.model.version
            checks.append(_judge(spec, data, "in-process", version, provider, _joined(parts)))
    finally:
        await core.close()
    return checks


def remote_addresses(settings: VerifySettings) -> list[tuple[str, str]]:
    """(transport, client address) of each server the flags name; a bare --grpc HOST:PORT is plain gRPC."""
    addresses = []
    if settings.url:
        addresses.append(("REST", settings.url))
    if settings.grpc:
        addresses.append(("gRPC", settings.grpc if "://" in settings.grpc else f"grpc://{settings.grpc}"))
    return addresses


def verify_remote(settings: VerifySettings) -> list[Check]:
    """Through pixelserve.client's V2 `infer`: the raw outputs, exact over both transports."""
    from pixelserve.client import Client, Retry

    key = settings.api_key.get_secret_value() if settings.api_key else None
    checks = []
    for transport, address in remote_addresses(settings):
        with Client(address, api_key=key, timeout=settings.timeout_s, retry=Retry(retries=2)) as client:
            for spec, data in golden_models(settings.model_repository, settings.model):
                wanted = [o for o in OUTPUTS if spec.has_output(o)]
                chunks = _batches(data, settings.batch_size)
                answers = [client.infer(spec.name, chunk, outputs=wanted) for chunk in chunks]
                outputs = _joined([a.outputs for a in answers])
                provider = client.model(spec.name).provider
                checks.append(_judge(spec, data, transport, answers[0].model.version, provider, outputs))
    return checks


def main(argv: list[str] | None = None) -> int:
    settings = parse(VerifySettings, argv, "verify")
    if isinstance(settings, int):
        return settings
    remote = bool(settings.url or settings.grpc)
    try:
        checks = verify_remote(settings) if remote else asyncio.run(verify_in_process(settings))
    except Exception as exc:  # unreachable server, unreadable repository: say so, no traceback
        print(f"pixelserve verify: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not checks:
        print(f"pixelserve verify: no model with a golden set in {settings.model_repository}", file=sys.stderr)
        return EXIT_USAGE
    for check in checks:
        print(check.line())
    print(json.dumps({"passed": all(c.passed for c in checks), "checks": len(checks)}))
    return EXIT_OK if all(c.passed for c in checks) else EXIT_MISMATCH
