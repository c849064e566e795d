"""A lock the claim took for a job is released when that job fails, however early it fails, so an
identical job waiting on it takes over at once instead of after the lock's TTL."""

from __future__ import annotations

import httpx

from mmq.contract import JobStatus
from tests.conftest import chat_body, data_url, png_bytes
from worker.pipeline import run_job


async def test_a_job_that_fails_before_its_look_up_still_releases_the_lock_claim_took(make_runtime):
    rt, producer = make_runtime(httpx.MockTransport(lambda r: httpx.Response(500)))
    body = chat_body(data_url(png_bytes((5, 6, 7))), prompt="x" * 20_000)  # big: stored, not inline
    job = await producer.submit_job("/v1/chat/completions", body, tenant="t")
    assert job.request_key and job.cache_key
    await rt.storage.delete(job.request_key)  # the job cannot even load its request
    await run_job({"mmq": rt}, job.id)
    record = await rt.records.get_job(job.id)
    assert record.status is JobStatus.failed
    assert not await rt.records.redis.exists(rt.cache.lock_key(job.cache_key))
