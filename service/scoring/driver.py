"""What every engine shares: plan the shards (resume), check the task with one probe, score shards with a few in
flight, and assemble the output once every shard is done."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..core.types import Applied, ImageInputs
from ..errors import InvalidInput
from .job import Job, Target, identity
from .location import Location
from .manifest import WorkDir, shard_ranges, work_dir_for
from .scorer import Row, Scorer, TaskRunner
from .sinks import write_errors, write_output
from .sources import Source


class Progress:
    """A tqdm bar in images with rate and ETA; none when turned off or when tqdm (the [batch] extra) is missing,
    as in the serving image: the summary at the end still says everything."""

    def __init__(self, plan: Plan) -> None:
        pending = set(plan.pending)
        done = sum(len(r) for i, r in enumerate(plan.shards) if i not in pending)
        self.bar = None
        if not plan.job.progress:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            return
        self.bar = tqdm(
            total=len(plan.source.entries),
            initial=done,
            unit="img",
            desc="scoring",
            file=sys.stderr,
            mininterval=0.5,
            smoothing=0.1,
        )

    def update(self, count: int) -> None:
        if self.bar is not None:
            self.bar.update(count)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@dataclass
class Plan:
    job: Job
    source: Source
    target: Target
    work: WorkDir
    shards: list[range]
    pending: list[int]
    scored: int = 0  # inputs scored by this run (resumed shards not counted)
    seconds: float = 0.0  # time spent scoring them
    startup_s: float | None = None  # Ray: time until the first shard began scoring (start-up, actors, model loads)
    startup_rows: int = 0

    def entries(self, index: int) -> Sequence:
        r = self.shards[index]
        return self.source.entries[r.start : r.stop]


@dataclass(frozen=True)
class Summary:
    total: int
    failed: int
    scored: int
    resumed_shards: int
    shards: int
    seconds: float
    target: Target
    task: str
    output: Location
    errors_path: Location

    startup_s: float | None = None
    startup_rows: int = 0

    @property
    def rate(self) -> float:
        return self.scored / self.seconds if self.seconds > 0 else 0.0

    @property
    def steady_rate(self) -> float:
        """Images/s after the first rows came back (Ray); the whole-run rate otherwise."""
        if self.startup_s is None:
            return self.rate
        steady_s = self.seconds - self.startup_s
        return (self.scored - self.startup_rows) / steady_s if steady_s > 0 else 0.0


def with_task(job: Job, target: Target) -> Job:
    """No --task means the model's own task."""
    return job if job.task else replace(job, task=target.task)


def make_plan(job: Job, source: Source, target: Target) -> Plan:
    """Open (or resume) the work directory; refuses another job's output with JobMismatch."""
    shards = shard_ranges(len(source.entries), job.shard_size)
    work = WorkDir(work_dir_for(job.output))
    finished = work.open(identity(job, target, source), shards, output=job.output, overwrite=job.overwrite)
    pending = [i for i in range(len(shards)) if i not in finished]
    return Plan(job, source, target, work, shards, pending)


def make_scorer(runner: TaskRunner, job: Job, target: Target, *, max_pixels: int, request_size: int) -> Scorer:
    if job.task == "denoise" and job.images_dir is None:
        raise InvalidInput(f"denoise writes PNGs: with --output in a store ({job.output}) give a local --images-dir")
    return Scorer(
        runner,
        target,
        task=job.task,
        top_k=job.top_k,
        exact_size=job.exact_size,
        mode=Applied(job.resize or target.preprocessing.resize, job.normalize or target.preprocessing.normalize),
        images_dir=job.images_dir,
        max_pixels=max_pixels,
        request_size=request_size,
    )


async def probe(scorer: Scorer) -> None:
    """One blank image through the task call: an unsupported task or an unreachable model fails here, before
    any shard is written, instead of turning every row into an error."""
    pre = scorer.target.preprocessing
    await scorer.call(ImageInputs(tensor=np.zeros((1, pre.height, pre.width, pre.channels), dtype=np.uint8)))


async def score_shards(plan: Plan, scorer: Scorer, progress: Progress, *, in_flight: int) -> None:
    """Shards run `in_flight` at a time, so reading and decoding one overlaps inference of another."""
    pending = iter(plan.pending)
    started = time.perf_counter()

    async def worker() -> None:
        for index in pending:
            entries = plan.entries(index)
            payloads = await asyncio.to_thread(plan.source.read, entries)
            rows = await scorer.score(entries, payloads)
            await asyncio.to_thread(plan.work.commit, index, rows)
            plan.scored += len(rows)
            progress.update(len(rows))

    workers = [asyncio.ensure_future(worker()) for _ in range(max(1, in_flight))]
    try:
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()
        plan.seconds += time.perf_counter() - started


async def score_job(
    job: Job, source: Source, runner: TaskRunner, target: Target, *, max_pixels: int, request_size: int, in_flight: int
) -> Plan:
    """Probe, plan (or resume), score every pending shard; the caller then closes its runner and calls `finish`."""
    job = with_task(job, target)
    scorer = make_scorer(runner, job, target, max_pixels=max_pixels, request_size=request_size)
    await probe(scorer)
    plan = make_plan(job, source, target)
    progress = Progress(plan)
    try:
        await score_shards(plan, scorer, progress, in_flight=in_flight)
    finally:
        progress.close()
    return plan


def finish(plan: Plan) -> Summary:
    """Assemble the output and the errors file from every shard, in listing order."""
    job = plan.job
    failed: list[Row] = []

    def collect() -> Iterator[Row]:
        for row in plan.work.rows():
            if row["status"] != "ok":
                failed.append(row)
            yield row

    total = write_output(job.output, job.format, job.task, plan.source.id_type, collect())
    write_errors(job.errors_path, failed)
    return Summary(
        total=total,
        failed=len(failed),
        scored=plan.scored,
        resumed_shards=len(plan.shards) - len(plan.pending),
        shards=len(plan.shards),
        seconds=plan.seconds,
        target=plan.target,
        task=job.task,
        output=job.output,
        errors_path=job.errors_path,
        startup_s=plan.startup_s,
        startup_rows=plan.startup_rows,
    )
