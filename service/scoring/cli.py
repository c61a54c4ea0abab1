"""`pixelserve score`: flags -> Job -> an engine -> a summary and an exit status."""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import CliImplicitFlag, SettingsConfigDict

from pixelserve.commandline import CommandSettings, parse

from ..core.types import DEFAULT_TOP_K, NormalizeMode, ResizeMode, TaskName
from ..errors import ServiceError
from ..settings import Device
from .driver import Summary
from .job import Job, OutputFormat
from .location import Location, StoreUnavailable
from .manifest import JobMismatch
from .sinks import format_for
from .sources import Source, SourceError, open_source

EXIT_OK = 0
EXIT_FAILED = 1  # the job stopped (model failed, server unreachable): rerun the same command to resume
EXIT_USAGE = 2  # bad flags, unknown model or task, another job's output, a missing extra
EXIT_SOME_INPUTS_FAILED = 3  # the job finished; some inputs are error rows (see the errors file)


class MissingExtra(Exception):
    """An engine needs packages of an extra that is not installed."""


def parse_model(text: str) -> tuple[str, int | None]:
    name, _, version = text.partition(":")
    if not version:
        return name, None
    if not (version.isascii() and version.isdigit()) or int(version) < 1:
        raise ValueError(f"version in {text!r} must be a positive integer")
    return name, int(version)


class ScoreSettings(CommandSettings):
    """Score many images with a model through the serving core, in resumable shards.

    sources: a folder of images (recursive), a .tar/.tar.gz of images, an .npz array (--npz-key, default x_test;
    ids are indices), or a .parquet/.csv table with a `path` column (or, in Parquet, an `image` column of bytes).
    outputs: .parquet (default), .jsonl or .csv: one row per input with id, path, model, version, status (ok/error),
    error and the task's columns; failed inputs are also listed in <output stem>.errors.jsonl.
    resume: rerun the same command; finished shards (in <output>.work/) are kept, the output holds every input once.
    object stores: input and output may be fsspec URIs (s3://, gs://, az://); the work directory is then the
    <output>.work/ prefix in the store, and credentials come from the backend's standard chain (AWS_* for S3).
    exit status: 0 all inputs scored, 3 some inputs failed (error rows), 1 the job stopped (rerun to resume),
    2 bad usage (unknown model, unsupported task, output of another job, missing extra).
    """

    model_config = SettingsConfigDict(cli_prog_name="pixelserve score")

    model: str = Field(description="NAME or NAME:VERSION (default: the version the server would serve)")
    model_repository: Path = Field(Path("models"), description="model repository (local and ray engines)")
    input: str = Field(description="folder, .tar/.tar.gz, .npz, .parquet or .csv; a path or a URI (s3://bucket/prefix)")
    output: str = Field(description="result file: .parquet, .jsonl or .csv; a path or a URI (s3://bucket/out.parquet)")
    task: TaskName | None = Field(None, description="default: the model's task")
    format: OutputFormat | None = Field(None, description="output format (default: from the suffix)")
    images_dir: Path | None = Field(
        None, description="denoised PNGs, a local folder (default: <output stem>-images beside a local output)"
    )
    npz_key: str = Field("x_test", description="array to score in an .npz")
    top_k: int = Field(DEFAULT_TOP_K, ge=1, description="labels per image for classify")
    shard_size: int = Field(1024, ge=1, description="inputs per shard (the unit of resume)")
    resize: ResizeMode | None = Field(None, description="stretch, center-crop or letterbox (default: the model's)")
    normalize: NormalizeMode | None = Field(None, description="none or digit (default: the model's)")
    exact_size: CliImplicitFlag[bool] = Field(
        False, description="reject images not at the model's size instead of resizing them"
    )
    engine: Literal["local", "ray"] = Field("local", description="in-process core or Ray Data actors")
    device: Device = Field("auto", description="onnxruntime device (local and ray engines)")
    batch_size: int = Field(256, ge=1, description="images per onnxruntime batch")
    threads: int = Field(0, ge=0, description="onnxruntime intra-op threads (0: all cores)")
    ray_address: str | None = Field(None, description="Ray cluster to join (default: start Ray locally)")
    ray_actors: int = Field(0, ge=0, description="scoring actors (default: one per GPU, else 1)")
    server: str | None = Field(
        None, description="HOST:PORT (or grpcs://HOST:PORT for TLS) of a running pixelserve: score over gRPC instead"
    )
    concurrency: int = Field(4, ge=1, description="gRPC requests in flight (--server)")
    request_size: int = Field(64, ge=1, description="images per gRPC request (--server)")
    api_key: SecretStr | None = Field(None, description="server API key (--server)")
    progress: CliImplicitFlag[bool] = Field(True, description="a progress bar (--no-progress hides it)")
    overwrite: CliImplicitFlag[bool] = Field(False, description="discard an earlier job's results in --output")


def job_from_settings(settings: ScoreSettings) -> Job:
    name, version = parse_model(settings.model)
    output = Location(settings.output)
    fmt = format_for(output, settings.format)
    if fmt == "parquet" and importlib.util.find_spec("pyarrow") is None:
        raise ValueError("Parquet output needs pyarrow: pip install 'pixelserve[batch]' (or write .jsonl or .csv)")
    return Job(
        model=name,
        version=version,
        task=settings.task,
        input=Location(settings.input),
        output=output,
        format=fmt,
        images_dir=settings.images_dir or _images_beside(output),
        repository=settings.model_repository,
        npz_key=settings.npz_key,
        top_k=settings.top_k,
        shard_size=settings.shard_size,
        exact_size=settings.exact_size,
        resize=settings.resize,
        normalize=settings.normalize,
        engine="server" if settings.server else settings.engine,
        device=settings.device,
        batch_size=settings.batch_size,
        threads=settings.threads,
        ray_address=settings.ray_address,
        ray_actors=settings.ray_actors,
        server=settings.server,
        concurrency=settings.concurrency,
        request_size=settings.request_size,
        api_key=settings.api_key.get_secret_value() if settings.api_key else None,
        progress=settings.progress,
        overwrite=settings.overwrite,
    )


def _images_beside(output: Location) -> Path | None:
    """The default folder for denoised PNGs: beside a local output; none beside an object (see make_scorer)."""
    return output.local.with_name(f"{output.name.split('.')[0]}-images") if output.local is not None else None


def engine_for(job: Job) -> Callable[[Job, Source], Summary]:
    """Imported late: Ray and gRPC load only when asked for."""
    if job.engine == "ray":
        try:
            import ray  # noqa: F401  (only checks that the extra is there)
        except ImportError as exc:
            raise MissingExtra(
                f"--engine ray needs Ray Data ({exc}); install it with: pip install 'pixelserve[batch]'"
            ) from exc
        from . import engine_ray

        return engine_ray.run
    if job.engine == "server":
        from . import engine_server

        return engine_server.run
    from . import engine_local

    return engine_local.run


def report(summary: Summary) -> None:
    s = summary
    print(
        f"scored {s.total} inputs with {s.target.name} version {s.target.version} ({s.task}) into {s.output}: "
        f"{s.total - s.failed} ok, {s.failed} failed"
        + (f" (listed in {s.errors_path})" if s.failed else "")
        + f"; this run scored {s.scored} in {s.seconds:.1f} s ({s.rate:.0f} images/s), "
        f"{s.resumed_shards} of {s.shards} shards were already done"
        + (f"; start-up {s.startup_s:.1f} s, then {s.steady_rate:.0f} images/s" if s.startup_s is not None else ""),
        file=sys.stderr,
    )


def main(argv: list[str] | None = None) -> int:
    settings = parse(ScoreSettings, argv, "score")
    if isinstance(settings, int):
        return settings
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        job = job_from_settings(settings)
        source = open_source(job.input, npz_key=job.npz_key)
        engine = engine_for(job)
    except (ValueError, SourceError, MissingExtra) as exc:
        print(f"pixelserve score: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StoreUnavailable as exc:
        print(f"pixelserve score: {type(exc).__name__}: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    try:
        summary = engine(job, source)
    except (JobMismatch, SourceError) as exc:
        print(f"pixelserve score: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ServiceError as exc:
        print(f"pixelserve score: {type(exc).__name__}: {exc.message}", file=sys.stderr)
        return EXIT_USAGE if _is_usage(exc) else EXIT_FAILED
    report(summary)
    return EXIT_SOME_INPUTS_FAILED if summary.failed else EXIT_OK


def _is_usage(error: ServiceError) -> bool:
    from ..errors import InvalidInput, ModelNotFound, Unauthenticated, UnsupportedTask

    return isinstance(error, ModelNotFound | UnsupportedTask | InvalidInput | Unauthenticated)
