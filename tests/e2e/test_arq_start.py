"""mmq's arq worker takes a due job in one round trip, and exactly one worker takes it."""

from __future__ import annotations

import asyncio

from arq.constants import in_progress_key_prefix

from mmq import scripts
from mmq.connections import connect


async def test_a_due_job_is_started_once_and_a_deferred_or_finished_one_not_at_all(redis_url):
    redis = connect(redis_url)
    start = scripts.register(redis, "arq_start")
    queue, now = "q:test", 1_000_000

    async def take(job_id: str):
        return await start([in_progress_key_prefix + job_id, queue], [job_id, now, 60_000])

    await redis.zadd(queue, {"due": now - 5, "later": now + 5_000})
    # many workers at once: one of them gets it
    taken = await asyncio.gather(*(take("due") for _ in range(8)))
    assert [float(t) for t in taken if t is not None] == [now - 5]
    assert await redis.pttl(in_progress_key_prefix + "due") > 50_000
    assert await take("later") is None  # re-enqueued for later (a deferral)
    assert await take("gone") is None  # finished: no longer in the queue
    await redis.aclose()
