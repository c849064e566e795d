"""The hot path's Redis budget, on a real Redis: a successful job costs mmq three round trips (claim with
the cache's answer, the gate's admit, and finish carrying the result, the cache entry, the lock release
and the gate's settle) and a cache hit two. Counted, not timed: a count does not depend on the machine."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from redis.asyncio.connection import AbstractConnection

from mmq.contract import JobStatus
from tests.conftest import chat_body, data_url, png_bytes
from worker.pipeline import run_job


@contextlib.contextmanager
def round_trips() -> Iterator[list[int]]:
    """Every send to Redis in this process while inside: a command, a script or a whole pipeline."""
    count = [0]
    original = AbstractConnection.send_packed_command

    async def counted(conn, command, check_health=True):  # type: ignore[no-untyped-def]
        count[0] += 1
        return await original(conn, command, check_health)

    AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]
    try:
        yield count
    finally:
        AbstractConnection.send_packed_command = original  # type: ignore[method-assign]


async def test_a_job_costs_three_round_trips_and_a_cache_hit_two(runtime, make_simulator):
    rt, producer = runtime(make_simulator("--latency-ms", "1"))
    body = chat_body(data_url(png_bytes((12, 34, 56))))
    leader = await producer.submit_job("/v1/chat/completions", body, tenant="t")
    duplicate = await producer.submit_job("/v1/chat/completions", body, tenant="t")  # no entry yet
    await run_job({"mmq": rt}, leader.id)  # also warms the scripts (a restart's one-off EVAL is not counted)
    jobs = [
        await producer.submit_job(
            "/v1/chat/completions", chat_body(data_url(png_bytes((i, 9, 9)))), tenant="t"
        )
        for i in range(3)
    ]
    with round_trips() as count:
        for job in jobs:
            await run_job({"mmq": rt}, job.id)
    assert count[0] == 3 * 3
    assert [j.status for j in await rt.records.get_jobs([j.id for j in jobs])] == [JobStatus.succeeded] * 3

    with round_trips() as count:
        await run_job({"mmq": rt}, duplicate.id)
    assert count[0] == 2
    hit = await rt.records.get_job(duplicate.id)
    assert hit.status is JobStatus.succeeded and hit.cached and hit.cached_from == leader.id


async def test_a_running_job_leaves_the_queue_head_until_its_lease_ends(runtime, make_simulator):
    """Every arq worker with a free slot checks each due id at the head of the queue (three round trips
    each) before it finds one to start; a running job stays in the queue until it ends, so claim moves its
    score to the end of its lease, where it is due again only if its worker died."""
    rt, producer = runtime(make_simulator())
    job = await producer.submit_job(
        "/v1/chat/completions", chat_body(data_url(png_bytes((1, 2, 3)))), tenant="t"
    )
    redis, queue = rt.records.redis, rt.settings.queue_name
    assert await redis.zscore(queue, job.id) <= time.time() * 1000  # due: at the head
    claimed = await rt.records.claim(job.id, queue=queue, lease_s=300)
    assert claimed.outcome == "ok"
    assert await redis.zscore(queue, job.id) >= (time.time() + 290) * 1000
    due_ids = await redis.zrangebyscore(queue, "-inf", time.time() * 1000)
    assert job.id.encode() not in due_ids
