"""The worker's sweep of stalled submissions (worker/reaper.py) and a deferred job's record move
(Records.defer), on the in-memory Redis; tests/e2e kills real processes (test_orphan_batches_e2e.py,
test_cancel_deferred_e2e.py)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from mmq.connections import embedded_redis
from mmq.contract import BatchStatus, JobStatus
from mmq.settings import Settings
from mmq.storage import open_storage
from producer.submit import BatchLine, Producer
from worker import reaper


def chat(n: int) -> BatchLine:
    body = {"model": "m", "messages": [{"role": "user", "content": f"prompt {n}"}]}
    return BatchLine.from_obj({"custom_id": f"r{n}", "url": "/v1/chat/completions", "body": body}, n)


@pytest.fixture
async def parts(tmp_path):
    redis = embedded_redis()
    settings = Settings(redis_url=None, storage_url=f"file://{tmp_path}", submit_stall_s=60)
    producer = Producer(redis, open_storage(settings.storage_url), settings)
    yield producer, SimpleNamespace(records=producer.records, settings=settings)
    await redis.aclose()


async def unsealed(producer: Producer, lines: int, age_s: float, **create) -> str:
    """A batch whose producer died after `lines` lines, its last progress `age_s` ago."""
    batch = await producer.create_batch(tenant="t", **create)
    await producer.add_lines(batch, [chat(n) for n in range(1, lines + 1)])
    mark = int((time.time() - age_s) * 1000)
    await producer.redis.zadd(producer.records.keys.submitting(), {batch.id: mark})
    return batch.id


async def test_a_stalled_submission_is_sealed_with_what_it_has_and_a_live_one_is_left(parts):
    producer, rt = parts
    stalled = await unsealed(producer, 3, age_s=61)
    live = await unsealed(producer, 2, age_s=30)
    assert await reaper.sweep(rt) == 1
    batch = await producer.records.get_batch(stalled)
    assert batch.sealed and batch.interrupted == "submission_interrupted"
    assert batch.status is BatchStatus.in_progress and batch.counts.queued == 3  # the workers run them
    other = await producer.records.get_batch(live)
    assert not other.sealed and other.interrupted is None
    assert await reaper.sweep(rt) == 0  # sealed once
    assert await producer.redis.zrange(producer.records.keys.submitting(), 0, -1) == [live.encode()]


async def test_a_stalled_batch_with_nothing_left_to_run_ends_at_once(parts):
    producer, rt = parts
    batch_id = await unsealed(producer, 0, age_s=61)
    await reaper.sweep(rt)
    batch = await producer.records.get_batch(batch_id)
    assert batch.status is BatchStatus.completed and batch.finished_at


async def test_a_scheduled_stalled_batch_still_opens_its_window_and_expires(parts):
    producer, rt = parts
    opens, deadline = time.time() + 3600, time.time() + 7200
    batch_id = await unsealed(producer, 2, age_s=61, not_before=opens, deadline=deadline)
    await reaper.sweep(rt)
    queued = dict(await producer.redis.zrange("mmq:queue", 0, -1, withscores=True))
    assert queued[f"release:{batch_id}".encode()] == int(opens * 1000)
    assert queued[f"expire:{batch_id}".encode()] == int(deadline * 1000)


async def test_a_v1_batch_fails_instead_its_queued_jobs_cancelled(parts):
    producer, rt = parts
    batch_id = await unsealed(producer, 4, age_s=61, fail_if_interrupted=True)
    [first, *_] = [i async for ids in producer.records.iter_batch_job_ids(batch_id) for i in ids]
    assert (await producer.records.claim(first)).outcome == "ok"  # one runs: it finishes
    await reaper.sweep(rt)
    batch = await producer.records.get_batch(batch_id)
    assert batch.status is BatchStatus.cancelling and batch.interrupted == "submission_interrupted"
    assert (batch.counts.cancelled, batch.counts.running) == (3, 1)


async def test_a_cancel_during_a_dead_submission_ends_cancelled(parts):
    """Was: `cancelling` for ever (the batch never sealed; lines queued after the cancel's sweep)."""
    producer, rt = parts
    batch_id = await unsealed(producer, 2, age_s=61)
    await producer.cancel_batch(batch_id)
    await producer.add_lines(await producer.records.get_batch(batch_id), [chat(3)])  # after the sweep
    await producer.redis.zadd(producer.records.keys.submitting(), {batch_id: 0})
    await reaper.sweep(rt)
    batch = await producer.records.get_batch(batch_id)
    assert batch.status is BatchStatus.cancelled and batch.counts.cancelled == 3


# ------------------------------------------------------------------------------------ Records.defer
async def test_a_deferred_job_waits_queued_and_a_cancel_reaches_it(parts):
    producer, _ = parts
    batch = await producer.submit_batch([chat(1), chat(2)], tenant="t")
    a, _ = [i async for ids in producer.records.iter_batch_job_ids(batch.id) for i in ids]
    job = (await producer.records.claim(a)).job
    job.resume = {"target": "x", "tries": 1}
    assert await producer.records.defer(job) == "deferred" and job.status is JobStatus.queued
    stored = await producer.records.get_job(a)
    assert stored.status is JobStatus.queued and stored.resume == {"target": "x", "tries": 1}
    counts = (await producer.records.get_batch(batch.id)).counts
    assert (counts.queued, counts.running) == (2, 0)
    assert await producer.cancel_batch(batch.id) == "cancelled"  # was `cancelling` until the job re-ran
    assert (await producer.records.claim(a)).outcome == "cancelled"  # its re-run does nothing


async def test_a_job_deferred_while_its_batch_is_cancelling_is_cancelled_and_ends_the_batch(parts):
    producer, _ = parts
    batch = await producer.submit_batch([chat(1)], tenant="t")
    [a] = [i async for ids in producer.records.iter_batch_job_ids(batch.id) for i in ids]
    job = (await producer.records.claim(a)).job
    assert await producer.cancel_batch(batch.id) == "cancelling"  # it runs: the sweep passes it
    assert await producer.records.defer(job) == "ended" and job.status is JobStatus.cancelled
    after = await producer.records.get_batch(batch.id)
    assert after.status is BatchStatus.cancelled and (after.counts.cancelled, after.counts.running) == (1, 0)


async def test_defer_writes_nothing_to_a_job_that_is_not_running(parts):
    producer, _ = parts
    batch = await producer.submit_batch([chat(1)], tenant="t")
    [a] = [i async for ids in producer.records.iter_batch_job_ids(batch.id) for i in ids]
    job = await producer.records.get_job(a)
    job.resume = {"tries": 9}
    assert await producer.records.defer(job) == "queued"  # its status: it was not running
    assert (await producer.records.get_job(a)).resume is None
    assert (await producer.records.get_batch(batch.id)).counts.queued == 1
