"""The Ray engine: the same shards scored by a pool of Ray actors, each holding its own InferenceCore.

The dataset carries listing positions of the pending shards; `map_batches` (numpy batches) hands them to an
actor, which reads the payloads from the source itself (no image bytes pass through the driver), decodes and
scores them through its core, and returns one JSON row per position. The driver gathers rows per shard and
commits a shard once all of its rows are in, with the same work directory and manifest as the local engine,
so a job may be resumed by either engine.

Resources: an actor reserves `ACTOR_CPUS` (less than a core) so Ray's own read and split tasks still find a
CPU on small machines (with whole-core actors a 2-core box deadlocks), and one GPU when the cluster has GPUs.
"""

from __future__ import annotations

import asyncio
import json
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
from .scorer import Row
from .sources import Source

ACTOR_CPUS = 0.5
RAY_TEMP_DIR = "/tmp/ray-pixelserve"  # short: Ray's socket paths must fit in 107 bytes
ACTOR_BATCH = 256


class ScoreActor:
    """One core per actor, on the actor's own event loop (its batcher lives there between calls)."""

    def __init__(self, job: Job, source: Source, target: Target, threads: int) -> None:
        settings = core_settings(job, threads=threads)
        self.loop = asyncio.new_event_loop()
        self.core = self.loop.run_until_complete(build_core(settings, Metrics()))
        self.source = source
        self.scorer = make_scorer(
            self.core, job, target, max_pixels=settings.max_image_pixels, request_size=job.shard_size
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        positions = batch["pos"]
        entries = [self.source.entries[int(p)] for p in positions]
        rows = self.loop.run_until_complete(self.scorer.score(entries, self.source.read(entries)))
        return {"pos": positions, "row": np.array([json.dumps(r, ensure_ascii=False) for r in rows], dtype=object)}


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
    """`started` is before ray.init, so the start-up time reported covers Ray, the actors and their cores."""
    job = plan.job
    size = job.shard_size
    positions = [p for i in plan.pending for p in plan.shards[i]]
    cluster = ray.cluster_resources()
    actors, gpus = _actors(job, cluster)
    threads = job.threads or max(1, int(cluster.get("CPU", 1)) // actors)
    dataset = ray.data.from_items([{"pos": p} for p in positions], override_num_blocks=max(1, len(plan.pending)))
    scored = dataset.map_batches(
        ScoreActor,
        fn_constructor_kwargs={"job": job, "source": plan.source, "target": plan.target, "threads": threads},
        batch_size=min(size, ACTOR_BATCH),
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=ACTOR_CPUS,
        num_gpus=gpus,
    )
    _quiet_ray_data()
    waiting: dict[int, dict[int, Row]] = {}
    for batch in scored.iter_batches(batch_format="numpy", batch_size=None):
        if plan.startup_s is None:
            plan.startup_s, plan.startup_rows = time.perf_counter() - started, len(batch["pos"])
        for pos, text in zip(batch["pos"], batch["row"], strict=True):
            shard = int(pos) // size
            rows = waiting.setdefault(shard, {})
            rows[int(pos)] = json.loads(text)
            if len(rows) == len(plan.shards[shard]):
                plan.work.commit(shard, [rows[p] for p in plan.shards[shard]])
                plan.scored += len(rows)
                del waiting[shard]
                progress.update(len(plan.shards[shard]))
    if waiting:
        raise RuntimeError(f"Ray returned incomplete shards {sorted(waiting)}; rerun to resume")


def run(job: Job, source: Source) -> Summary:
    """Checks the model and task and plans (or refuses) before Ray starts; Ray runs only if shards are pending."""
    job, target = asyncio.run(checked_target(job))
    plan = make_plan(job, source, target)
    if plan.pending:
        started = time.perf_counter()
        ray = _init_ray(job)
        progress = Progress(plan)
        try:
            _score(ray, plan, progress, started)
        finally:
            plan.seconds = time.perf_counter() - started
            progress.close()
            ray.shutdown()
    return finish(plan)
