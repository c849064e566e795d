"""mmq's arq worker takes a due job in one round trip, exactly one worker takes it, and an mmq job is
claimed by the same script (its payload read, its try counted, its record running)."""

from __future__ import annotations

import asyncio
import time

from arq.constants import in_progress_key_prefix, job_key_prefix, retry_key_prefix

from mmq import scripts
from mmq.connections import connect
from mmq.contract import JobStatus
from mmq.record_layout import claim_from
from tests.conftest import chat_body, data_url, png_bytes


def _keys(job_id: str, queue: str, job_key: str = "") -> list[str]:
    return [
        in_progress_key_prefix + job_id,
        queue,
        job_key_prefix + job_id,
        retry_key_prefix + job_id,
        job_key,
    ]


async def test_a_due_job_is_started_once_and_a_deferred_or_finished_one_not_at_all(redis_url):
    redis = connect(redis_url)
    start = scripts.register(redis, "start")
    queue, now = "q:test", 1_000_000

    async def take(job_id: str):
        return await start(_keys(job_id, queue), [job_id, now, 60_000, repr(now / 1000), "p", 1000, 60_000])

    await redis.zadd(queue, {"due": now - 5, "later": now + 5_000})
    # many workers at once: one of them gets it; with no mmq record it is arq's to run (score only)
    taken = await asyncio.gather(*(take("due") for _ in range(8)))
    assert [[float(t[0])] for t in taken if t] == [[now - 5]]
    assert await redis.pttl(in_progress_key_prefix + "due") > 50_000
    assert not await take("later")  # re-enqueued for later (a deferral)
    assert not await take("gone")  # finished: no longer in the queue
    await redis.delete(in_progress_key_prefix + "due", queue)
    await redis.aclose()


async def test_an_mmq_job_is_claimed_as_it_starts(runtime, make_simulator):
    rt, producer = runtime(make_simulator())
    job = await producer.submit_job(
        "/v1/chat/completions", chat_body(data_url(png_bytes((5, 6, 7)))), tenant="t"
    )
    redis, queue = rt.records.redis, rt.settings.queue_name
    start = scripts.register(redis, "start")
    now = time.time()
    args = [job.id, int(now * 1000), 60_000, repr(now), rt.records.prefix, 1000, 300_000]
    keys = _keys(job.id, queue, rt.records.job_key(job.id))
    taken = await asyncio.gather(*(start(keys, args) for _ in range(4)))
    [out] = [t for t in taken if t]
    _score, payload, tries = out[:3]
    assert b"run_job" in payload and tries == 1
    claim = claim_from(out[3:])
    assert claim.outcome == "ok" and claim.job.id == job.id and claim.job.request["model"] == "gpt-4o-mini"
    assert (await rt.records.get_job(job.id)).status is JobStatus.running
    # out of the polls' way until its lease ends
    assert await redis.zscore(queue, job.id) >= (now + 290) * 1000
