"""What one `pixelserve score` run asks for, and the identity that ties an output to the job that made it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pixelserve.modelspec import Preprocessing

from ..core.types import DEFAULT_TOP_K, NormalizeMode, ResizeMode, TaskName
from .location import Location
from .sources import Source

OutputFormat = Literal["parquet", "jsonl", "csv"]
EngineName = Literal["local", "ray", "server"]


@dataclass(frozen=True)
class Job:
    model: str
    version: int | None
    task: TaskName | None  # None: the model's own task
    input: Location
    output: Location
    format: OutputFormat
    images_dir: Path | None  # None: the output is in a store and no local --images-dir was given
    repository: Path = Path("models")
    npz_key: str = "x_test"
    top_k: int = DEFAULT_TOP_K
    shard_size: int = 1024
    exact_size: bool = False
    resize: ResizeMode | None = None  # None: the model's declared preprocessing
    normalize: NormalizeMode | None = None
    engine: EngineName = "local"
    device: str = "auto"
    batch_size: int = 256
    threads: int = 0
    ray_address: str | None = None
    ray_actors: int = 0
    server: str | None = None
    concurrency: int = 4
    request_size: int = 64
    api_key: str | None = None
    progress: bool = True
    overwrite: bool = False

    @property
    def errors_path(self) -> Location:
        return self.output.with_suffix(".errors.jsonl")


@dataclass(frozen=True)
class Target:
    """The model version that answers, as the scorer needs it: what to decode to, and what to report."""

    name: str
    version: int
    task: TaskName  # the model's own task
    preprocessing: Preprocessing


def identity(job: Job, target: Target, source: Source) -> dict[str, Any]:
    """Everything that decides the rows: a rerun resumes only when this is equal, field for field. The engine
    and the output format are not part of it, so a job started locally may finish on Ray."""
    options: dict[str, Any] = {"shard_size": job.shard_size, "exact_size": job.exact_size}
    if job.resize or job.normalize:
        options["preprocessing"] = {"resize": job.resize, "normalize": job.normalize}
    if job.task == "classify":
        options["top_k"] = job.top_k
    if job.task == "denoise":
        options["images_dir"] = str(job.images_dir.resolve()) if job.images_dir else None
    if source.kind == "npz":
        options["npz_key"] = job.npz_key
    return {
        "model": target.name,
        "version": target.version,
        "task": job.task,
        "input": {
            "path": job.input.identity(),
            "kind": source.kind,
            "count": len(source.entries),
            "fingerprint": source.fingerprint(),
        },
        "options": options,
    }
