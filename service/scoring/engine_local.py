"""The local engine: one InferenceCore in this process, exactly as the server builds it, tuned for throughput
through Settings (big batches, a queue that holds the shards in flight, no hot reload)."""

from __future__ import annotations

import asyncio

from ..core.core import InferenceCore
from ..core.types import ModelRef
from ..observe.metrics import Metrics
from ..settings import Settings
from ..wiring import build_core
from .driver import Summary, finish, make_scorer, probe, score_job, with_task
from .job import Job, Target
from .sources import Source

SHARDS_IN_FLIGHT = 2
REQUEST_TIMEOUT_S = 3600.0  # a whole shard is one request; on a slow CPU that can take minutes


def core_settings(job: Job, *, threads: int | None = None) -> Settings:
    """Settings for a batch job: a shard is one request (the batcher cuts it into max_batch_size batches), and
    the queue holds every shard in flight. A version given in --model is pinned so the core loads that one."""
    return Settings(
        model_repository=job.repository,
        device=job.device,  # type: ignore[arg-type]
        intra_op_threads=job.threads if threads is None else threads,
        max_batch_size=job.batch_size,
        max_queue_delay_ms=0.0,
        max_queue_size=job.shard_size * SHARDS_IN_FLIGHT,
        max_batch_images=job.shard_size,
        max_request_bytes=2**40,
        request_timeout_s=REQUEST_TIMEOUT_S,
        pinned_versions={job.model: job.version} if job.version else {},
        hot_reload=False,
        log_level="warning",
    )


def target_of(core: InferenceCore, job: Job) -> Target:
    """The version the core serves for the job (ModelNotFound / ModelNotReady say why there is none)."""
    spec = core.model_info(ModelRef(job.model, job.version)).spec
    return Target(spec.name, spec.version, spec.task, spec.preprocessing)


async def checked_target(job: Job) -> tuple[Job, Target]:
    """The version a core serves for the job, probed with the job's task, from a short-lived core: the Ray
    driver knows the model and that the task works before it starts any actor."""
    settings = core_settings(job).model_copy(update={"warmup": False})
    core = await build_core(settings, Metrics())
    try:
        target = target_of(core, job)
        job = with_task(job, target)
        await probe(make_scorer(core, job, target, max_pixels=settings.max_image_pixels, request_size=1))
        return job, target
    finally:
        await core.close()


async def _run(job: Job, source: Source) -> Summary:
    settings = core_settings(job)
    core = await build_core(settings, Metrics())
    try:
        plan = await score_job(
            job,
            source,
            core,
            target_of(core, job),
            max_pixels=settings.max_image_pixels,
            request_size=job.shard_size,
            in_flight=SHARDS_IN_FLIGHT,
        )
    finally:
        await core.close()
    return finish(plan)


def run(job: Job, source: Source) -> Summary:
    return asyncio.run(_run(job, source))
