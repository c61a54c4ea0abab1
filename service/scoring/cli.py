"""`pixelserve score`: flags -> Job -> an engine -> a summary and an exit status."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from pixelserve.service.errors import ServiceError
from pixelserve.service.scoring.driver import Summary
from pixelserve.service.scoring.job import Job
from pixelserve.service.scoring.manifest import JobMismatch
from pixelserve.service.scoring.sinks import format_for
from pixelserve.service.scoring.sources import Source, SourceError, open_source

EXIT_OK = 0
EXIT_FAILED = 1  # the job stopped (model failed, server unreachable): rerun the same command to resume
EXIT_USAGE = 2  # bad flags, unknown model or task, another job's output, a missing extra
EXIT_SOME_INPUTS_FAILED = 3  # the job finished; some inputs are error rows (see the errors file)

EPILOG = """\
sources: a folder of images (recursive), a .tar/.tar.gz of images, an .npz array (--npz-key, default x_test;
ids are indices), or a .parquet/.csv table with a `path` column (or, in Parquet, an `image` column of bytes).
outputs: .parquet (default), .jsonl or .csv: one row per input with id, path, model, version, status (ok/error),
error and the task's columns; failed inputs are also listed in <output stem>.errors.jsonl.
resume: rerun the same command; finished shards (in <output>.work/) are kept, the output holds every input once.
exit status: 0 all inputs scored, 3 some inputs failed (error rows), 1 the job stopped (rerun to resume),
2 bad usage (unknown model, unsupported task, output of another job, missing extra).
"""


class MissingExtra(Exception):
    """An engine needs packages of an extra that is not installed."""


def parse_model(text: str) -> tuple[str, int | None]:
    name, _, version = text.partition(":")
    if not version:
        return name, None
    if not version.isdigit() or int(version) < 1:
        raise argparse.ArgumentTypeError(f"version in {text!r} must be a positive integer")
    return name, int(version)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pixelserve score",
        description="Score many images with a model through the serving core, in resumable shards.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="NAME or NAME:VERSION (default: the version the server would serve)")
    p.add_argument(
        "--model-repository",
        type=Path,
        default=Path(os.environ.get("PIXELSERVE_MODEL_REPOSITORY", "models")),
        help="model repository (local and ray engines)",
    )
    p.add_argument("--input", type=Path, required=True, help="folder, .tar/.tar.gz, .npz, .parquet or .csv")
    p.add_argument("--output", type=Path, required=True, help="result file: .parquet, .jsonl or .csv")
    p.add_argument("--task", choices=["classify", "denoise", "reconstruct", "encode"], help="default: the model's task")
    p.add_argument("--format", choices=["parquet", "jsonl", "csv"], help="output format (default: from the suffix)")
    p.add_argument("--images-dir", type=Path, help="denoised PNGs (default: <output stem>-images beside the output)")
    p.add_argument("--npz-key", default="x_test", help="array to score in an .npz")
    p.add_argument("--top-k", type=int, default=5, help="labels per image for classify")
    p.add_argument("--shard-size", type=int, default=1024, help="inputs per shard (the unit of resume)")
    p.add_argument(
        "--exact-size", action="store_true", help="reject images not at the model's size instead of resizing them"
    )
    p.add_argument("--engine", choices=["local", "ray"], default="local", help="in-process core or Ray Data actors")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "tensorrt"], default="auto")
    p.add_argument("--batch-size", type=int, default=256, help="images per onnxruntime batch")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: all cores)")
    p.add_argument("--ray-address", help="Ray cluster to join (default: start Ray locally)")
    p.add_argument("--ray-actors", type=int, default=0, help="scoring actors (default: one per GPU, else 1)")
    p.add_argument("--server", help="HOST:PORT of a running pixelserve: score over gRPC instead of in-process")
    p.add_argument("--concurrency", type=int, default=4, help="gRPC requests in flight (--server)")
    p.add_argument("--request-size", type=int, default=64, help="images per gRPC request (--server)")
    p.add_argument("--api-key", default=os.environ.get("PIXELSERVE_API_KEY"), help="server API key (--server)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true", help="discard an earlier job's results in --output")
    return p


def job_from_args(args: argparse.Namespace) -> Job:
    name, version = parse_model(args.model)
    output: Path = args.output
    for value, flag in ((args.shard_size, "--shard-size"), (args.batch_size, "--batch-size"), (args.top_k, "--top-k")):
        if value < 1:
            raise ValueError(f"{flag} must be at least 1")
    fmt = format_for(output, args.format)
    if fmt == "parquet" and importlib.util.find_spec("pyarrow") is None:
        raise ValueError("Parquet output needs pyarrow: pip install 'pixelserve[batch]' (or write .jsonl or .csv)")
    return Job(
        model=name,
        version=version,
        task=args.task,
        input=args.input,
        output=output,
        format=fmt,
        images_dir=args.images_dir or output.with_name(f"{output.name.split('.')[0]}-images"),
        repository=args.model_repository,
        npz_key=args.npz_key,
        top_k=args.top_k,
        shard_size=args.shard_size,
        exact_size=args.exact_size,
        engine="server" if args.server else args.engine,
        device=args.device,
        batch_size=args.batch_size,
        threads=args.threads,
        ray_address=args.ray_address,
        ray_actors=args.ray_actors,
        server=args.server,
        concurrency=args.concurrency,
        request_size=args.request_size,
        api_key=args.api_key,
        progress=not args.no_progress,
        overwrite=args.overwrite,
    )


def engine_for(job: Job) -> Callable[[Job, Source], Summary]:
    """Imported late: Ray and gRPC load only when asked for."""
    if job.engine == "ray":
        try:
            import ray  # noqa: F401  (only checks that the extra is there)
        except ImportError as exc:
            raise MissingExtra(
                f"--engine ray needs Ray Data ({exc}); install it with: pip install 'pixelserve[batch]'"
            ) from exc
        from pixelserve.service.scoring import engine_ray

        return engine_ray.run
    if job.engine == "server":
        from pixelserve.service.scoring import engine_server

        return engine_server.run
    from pixelserve.service.scoring import engine_local

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
    parser = build_parser()
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # --help (0) or bad flags (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        job = job_from_args(args)
        source = open_source(job.input, npz_key=job.npz_key)
        engine = engine_for(job)
    except (ValueError, SourceError, MissingExtra) as exc:
        print(f"pixelserve score: {exc}", file=sys.stderr)
        return EXIT_USAGE
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
    from pixelserve.service.errors import InvalidInput, ModelNotFound, Unauthenticated, UnsupportedTask

    return isinstance(error, ModelNotFound | UnsupportedTask | InvalidInput | Unauthenticated)
