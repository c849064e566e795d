"""The hot path's Redis budget, on a real Redis: a successful job costs three round trips in all, arq's
included (start with mmq's claim and the cache's answer, the gate's admit, and finish carrying the result,
the cache entry, the lock release, the gate's settle and arq's clean-up) and a cache hit two. Counted, not
timed: a count does not depend on the machine."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from redis.asyncio.connection import AbstractConnection

from mmq.contract import BatchStatus, JobStatus
from producer.submit import BatchLine
from tests.conftest import chat_body, data_url, png_bytes
from worker.pipeline import run_job
from worker.worker import build_worker


@contextlib.contextmanager
def sends() -> Iterator[list[bytes]]:
    """The first command's name of every send to Redis in this process while inside."""
    sent: list[bytes] = []
    original = AbstractConnection.send_packed_command

    async def counted(conn, command, check_health=True):  # type: ignore[no-untyped-def]
        data = command if isinstance(command, bytes | bytearray) else b"".join(command)
        sent.append(data.split(b"\r\n", 3)[2].upper())
        return await original(conn, command, check_health)

    AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]
    try:
        yield sent
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
    with sends() as sent:
        for job in jobs:
            await run_job({"mmq": rt}, job.id)
    assert len(sent) == 3 * 3
    assert [j.status for j in await rt.records.get_jobs([j.id for j in jobs])] == [JobStatus.succeeded] * 3

    with sends() as sent:
        await run_job({"mmq": rt}, duplicate.id)
    assert len(sent) == 2
    hit = await rt.records.get_job(duplicate.id)
    assert hit.status is JobStatus.succeeded and hit.cached and hit.cached_from == leader.id


async def _run_burst(settings) -> None:
    worker = build_worker(settings, burst=True, handle_signals=False)
    try:
        await worker.main()
    finally:
        await worker.close()


async def test_a_job_through_the_worker_costs_three_round_trips_in_all(runtime, make_simulator):
    """Through mmq's arq worker (in this process), every send counted: arq's polls, starts and finishes
    too. arq alone spends six per job (start, payload read, finish) before mmq's own three."""
    rt, producer = runtime(make_simulator("--latency-ms", "1"), max_jobs=4)
    warm = await producer.submit_job(
        "/v1/chat/completions", chat_body(data_url(png_bytes((1, 1, 1)))), tenant="t"
    )
    await _run_burst(rt.settings)  # loads the scripts once (a restart's one-off EVAL is not counted)
    assert (await rt.records.get_job(warm.id)).status is JobStatus.succeeded
    n = 40
    lines = (
        BatchLine(
            body=chat_body(data_url(png_bytes((i, 7, 7)))), url="/v1/chat/completions", custom_id=str(i)
        )
        for i in range(n)
    )
    batch = await producer.submit_batch(lines, tenant="t")
    with sends() as sent:
        await _run_burst(rt.settings)
    final = await rt.records.get_batch(batch.id)
    assert final.status is BatchStatus.completed and final.counts.succeeded == n
    polls = sum(1 for c in sent if c in (b"ZRANGEBYSCORE", b"ZCARD"))
    setup = sum(1 for c in sent if c in (b"CLIENT", b"SELECT", b"PING", b"INFO", b"HELLO"))
    setup += sum(1 for c in sent if c == b"PEXPIRE")  # the lease heartbeat, if the run took 5 s
    # 3 per job; besides, the burst worker's polls, its connections' set-up and six sends once per run
    # (arq's health-check record and its removal, the shared-store check's SET NX and GET, the batch's
    # read at the end); the old path cost 6 per job
    assert len(sent) - polls - setup - 6 <= 3 * n, sent
    assert polls <= 2 * n / 3, polls  # several jobs per poll


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
