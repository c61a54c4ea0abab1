"""The Ray engine: the same shards scored by a pool of Ray actors, each holding its own InferenceCore.

The dataset carries the indices of the pending shards, one per block; `map_batches` hands one shard at a time
to an actor, which reads the shard's payloads from the source itself (local files, or concurrent GETs from the
store), scores them through its core and writes the shard to the work directory itself, in one atomic step
(rename, or one PUT). Only a receipt comes back to the driver (shard, rows, errors, who wrote it): no image and
no row passes through it. The driver records each receipt in the manifest, the single writer of the manifest,
and assembles the output from the shards at the end, as the local engine does; a job may be resumed by either.

Why not `ray.data.read_binary_files`: a shard must be written whole by one worker for its commit to be atomic,
and Ray Data's readers cut files into blocks of their own choosing; lining those up with shards again takes a
shuffle of every image. An actor reading its shard's objects itself is the same concurrent GETs without one.
With the output in a store the work directory is too, so workers on other nodes write to it directly.

Resources: an actor reserves `ACTOR_CPUS` (less than a core) so Ray's own read and split tasks still find a
CPU on small machines (with whole-core actors a 2-core box deadlocks), and one GPU when the cluster has GPUs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import numpy as np

from ..observe.metrics import Metrics
from ..wiring import build_core
from .driver import Plan, Progress, Summary, finish, make_plan, make_scorer
from .engine_local import checked_target, core_settings
from .job import Job, Target
from .location import Location
from .manifest import write_shard
from .sources import Source

ACTOR_CPUS = 0.5
RAY_TEMP_DIR = "/tmp/ray-pixelserve"  # short: Ray's socket paths must fit in 107 bytes


class ScoreActor:
    """One core per actor, on the actor's own event loop (its batcher lives there between calls)."""

    def __init__(self, job: Job, source: Source, target: Target, threads: int, work: Location) -> None:
        settings = core_settings(job, threads=threads)
        self.loop = asyncio.new_event_loop()
        self.core = self.loop.run_until_complete(build_core(settings, Metrics()))
        self.source = source
        self.size = job.shard_size
        self.work = work
        self.scorer = make_scorer(
            self.core, job, target, max_pixels=settings.max_image_pixels, request_size=job.shard_size
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Score and write each shard of the batch; return receipts only."""
        receipts, began = [], time.time()
        for shard in batch["shard"]:
            start = int(shard) * self.size
            entries = self.source.entries[start : start + self.size]
            rows = self.loop.run_until_complete(self.scorer.score(entries, self.source.read(entries)))
            receipts.append(write_shard(self.work, int(shard), rows))
        return {
            "shard": batch["shard"],
            "began": np.full(len(receipts), began),  # wall clock: when this worker started on the shard
            "rows": np.array([r["rows"] for r in receipts], dtype=np.int64),
            "errors": np.array([r["errors"] for r in receipts], dtype=np.int64),
            "writer": np.array([r["writer"] for r in receipts], dtype=object),
        }


def _init_ray(job: Job) -> Any:
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    quiet = {"logging_level": logging.WARNING, "log_to_driver": False, "include_dashboard": False}
    if job.ray_address or os.environ.get("RAY_ADDRESS"):  # a cluster (`ray job submit` / RayJob set RAY_ADDRESS)
        ray.init(address=job.ray_address, **quiet)
    else:
        ray.init(_temp_dir=RAY_TEMP_DIR, **quiet)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # ours counts images and shards; Ray's would interleave with it
    ctx.enable_auto_log_stats = False
    ctx.execution_options.verbose_progress = False
    return ray


def _quiet_ray_data() -> None:
    """Ray Data configures its loggers when a dataset is built and prints execution plans and stats at INFO;
    keep its console to errors (its log files in the session directory still have everything)."""
    for handler in logging.getLogger("ray.data").handlers:
        if type(handler).__name__ != "SessionFileHandler":
            handler.setLevel(logging.ERROR)


def _actors(job: Job, cluster: dict[str, float]) -> tuple[int, float]:
    """(actor count, GPUs per actor): one actor per GPU by default, else one actor per two CPUs."""
    gpus = int(cluster.get("GPU", 0))
    if gpus:
        return job.ray_actors or gpus, 1.0
    return job.ray_actors or max(1, int(cluster.get("CPU", 1)) // 2), 0.0


def _score(ray: Any, plan: Plan, progress: Progress, started: float) -> None:
    """`started` (wall clock) is before ray.init: the start-up reported is until the first shard began scoring,
    so it covers Ray, the actors and their cores, and the steady rate covers every row."""
    job = plan.job
    cluster = ray.cluster_resources()
    actors, gpus = _actors(job, cluster)
    threads = job.threads or max(1, int(cluster.get("CPU", 1)) // actors)
    dataset = ray.data.from_items([{"shard": i} for i in plan.pending], override_num_blocks=len(plan.pending))
    arguments = {"job": job, "source": plan.source, "target": plan.target, "threads": threads, "work": plan.work.root}
    scored = dataset.map_batches(
        ScoreActor,
        fn_constructor_kwargs=arguments,
        batch_size=1,  # a shard is the unit of work and of commit
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=ACTOR_CPUS,
        num_gpus=gpus,
    )
    _quiet_ray_data()
    recorded: set[int] = set()
    for batch in scored.iter_batches(batch_format="numpy", batch_size=None):
        receipts = zip(batch["shard"], batch["rows"], batch["errors"], batch["writer"], strict=True)
        for shard, rows, errors, writer in receipts:
            index, count = int(shard), int(rows)
            if count != len(plan.shards[index]):
                raise RuntimeError(f"shard {index} came back with {count} rows, not {len(plan.shards[index])}")
            plan.work.record(index, {"rows": count, "errors": int(errors), "writer": str(writer)})
            recorded.add(index)
            plan.scored += count
            progress.update(count)
        first = min(float(t) for t in batch["began"]) - started  # another node's clock may be off: clamp
        first = max(0.0, min(first, time.time() - started))
        plan.startup_s = first if plan.startup_s is None else min(plan.startup_s, first)
    missing = sorted(set(plan.pending) - recorded)
    if missing:
        raise RuntimeError(f"Ray returned no receipt for shards {missing}; rerun to resume")


def run(job: Job, source: Source) -> Summary:
    """Checks the model and task and plans (or refuses) before Ray starts; Ray runs only if shards are pending."""
    job, target = asyncio.run(checked_target(job))
    plan = make_plan(job, source, target)
    if plan.pending:
        started = time.time()
        ray = _init_ray(job)
        progress = Progress(plan)
        try:
            _score(ray, plan, progress, started)
        finally:
            plan.seconds = time.time() - started
            progress.close()
            ray.shutdown()
    return finish(plan)
