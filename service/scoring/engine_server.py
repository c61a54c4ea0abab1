"""The server engine: the same shards, decoded and checked here, scored by a running pixelserve over gRPC.

Images travel as uint8 tensors already at the model's size (decoded here with the core's own function), so
one bad file is one error row and the server does no decoding. Concurrency is bounded by the client; queue-full
and unavailable answers are retried with backoff there.
"""

from __future__ import annotations

import asyncio

from ..core.types import ModelRef
from ..grpc.client import TaskClient
from ..settings import Settings
from .driver import Summary, finish, score_job
from .job import Job, Target
from .sources import Source

SHARDS_IN_FLIGHT = 2  # each shard sends its requests concurrently; the client bounds the total


async def _run(job: Job, source: Source) -> Summary:
    assert job.server is not None
    client = TaskClient(job.server, api_key=job.api_key, concurrency=job.concurrency)
    try:
        remote = await client.describe(ModelRef(job.model, job.version))
        target = Target(remote.name, remote.version, remote.task, remote.preprocessing)
        plan = await score_job(
            job,
            source,
            client,
            target,
            # decoding happens here, under the service's default pixel limit
            max_pixels=Settings.model_fields["max_image_pixels"].default,
            request_size=job.request_size,
            in_flight=SHARDS_IN_FLIGHT,
        )
    finally:
        await client.close()
    return finish(plan)


def run(job: Job, source: Source) -> Summary:
    return asyncio.run(_run(job, source))
