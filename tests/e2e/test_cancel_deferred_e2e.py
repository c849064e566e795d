"""Cancel reaches deferred jobs (issue 13 item 5): with every target down, a batch's jobs wait for their
circuit's probe (deferred: arq's Retry); they waited as `running`, so a cancel left the batch `cancelling`
for minutes (`0 jobs cancelled`) and each job called the provider again when it re-ran. A deferred job
now waits `queued` (worker/finish.py `defer`, mmq/lua/defer.lua): the cancel ends it at once, the batch
ends `cancelled`, and no job calls the provider after the cancel. Real Redis, mmq's own worker in this
process, a simulator answering 500 to everything.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from mmq.contract import BatchStatus
from producer.submit import BatchLine
from tests.e2e.conftest import wait_batch
from tests.e2e.test_resilience_e2e import chat_calls, fault

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

OPEN_S = 1.5  # the circuit's open period: a deferred job comes back for its probe about this often


async def every_job_deferred(records, batch_id: str, n: int, timeout: float = 30) -> None:
    """Waits until each of the batch's `n` jobs has been deferred at least once (it carries a resume
    point)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = [j async for ids in records.iter_batch_job_ids(batch_id) for j in await records.get_jobs(ids)]
        if len(jobs) == n and all(j.resume is not None for j in jobs):
            return
        await asyncio.sleep(0.05)
    raise TimeoutError([(j.status.value, j.resume) for j in jobs])


async def test_cancel_while_every_target_is_down_ends_the_batch_and_calls_nothing_more(
    runtime, make_simulator
):
    from worker.worker import build_worker

    a = make_simulator()
    fault(a, status=500, count=None)  # the only target is down
    rt, producer = runtime(
        a,
        circuit_threshold=1,
        circuit_open_s=OPEN_S,
        max_attempts=50,
        max_total_attempts=50,
        poll_delay_s=0.05,
        retry_sleep_max_s=0.5,
    )
    n = 6
    lines = [
        BatchLine(
            body={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"Say {i}."}]},
            url="/v1/chat/completions",
            custom_id=f"r{i}",
        )
        for i in range(n)
    ]
    batch = await producer.submit_batch(lines, tenant="t")
    worker = build_worker(rt.settings, burst=True, handle_signals=False)
    running = asyncio.ensure_future(worker.main())
    try:
        await every_job_deferred(rt.records, batch.id, n)
        calls_at_cancel = chat_calls(a)
        in_flight = (await rt.records.get_batch(batch.id)).counts.running  # a probe may be on its way
        status = await producer.cancel_batch(batch.id)
        assert status == "cancelled" or in_flight, status  # was `cancelling`, with 0 jobs cancelled
        ended = await wait_batch(rt.records, batch.id, timeout=3 * OPEN_S)  # promptly, either way
        assert ended.status is BatchStatus.cancelled and ended.counts.cancelled == n
        calls_at_end = chat_calls(a)
        assert calls_at_end - calls_at_cancel <= in_flight
        await asyncio.wait_for(running, timeout=30)  # the re-runs find their jobs cancelled, and end
        assert chat_calls(a) == calls_at_end  # no job called the provider after the cancel
    finally:
        running.cancel()
        await worker.close()
