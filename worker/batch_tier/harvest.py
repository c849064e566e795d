"""The batch tier's last step: each line of an ended provider batch answers its job as a realtime call would.

Each answer is parsed by the realtime adapter and stored exactly as a realtime answer is (result, cache
entry, counters, an attempt with `tier: batch` and the provider batch id, the cost at the batch price).
A line that finished during the cancellation of a pack that fell back answers its job if the realtime
call has not run yet; if it has, the job was paid twice: counted in its batch's `paid_twice`, the first
answer kept. A line that may run again (expired, cancelled, a 5xx inside the batch) goes realtime; a 4xx
fails its job. The pack's stored lines are removed once its harvest is recorded.
"""

from __future__ import annotations

import logging
import time

import httpx

from mmq.contract import Attempt, JobError, JobRecord, JobStatus
from mmq.errors import ProviderError
from mmq.packs import Pack
from worker import budget
from worker.batch_tier.protocol import LineResult, NativeBatchAPI, ProviderBatch
from worker.batch_tier.steps import line_key
from worker.finish import finish
from worker.providers import get_adapter
from worker.providers.base import ProviderResponse, Target
from worker.results import store_result
from worker.runtime import Runtime

log = logging.getLogger("mmq.worker")


# ---------------------------------------------------------------------------------------------- harvest
async def harvest(
    rt: Runtime, pack: Pack, api: NativeBatchAPI, target: Target, batch: ProviderBatch
) -> dict[str, int]:
    """Every line of an ended provider batch, stored as a realtime answer is; what did not come back
    goes realtime. Re-running it after a crash changes nothing already done (finish moves only from
    `provider_batch`, or `queued` after a fallback)."""
    counts = {"answered": 0, "failed": 0, "realtime": 0, "paid_twice": 0}
    again: list[str] = []
    seen: set[str] = set()
    async for line in api.results(rt.client, target, batch):
        seen.add(line.custom_id)
        job = await rt.records.get_job(line.custom_id)
        if job is None:
            continue
        outcome = await _take_line(rt, pack, batch, job, line)
        if outcome == "again":
            again.append(job.id)
        else:
            counts[outcome] += 1
    again += [i for i in await rt.packs.job_ids(pack.id) if i not in seen]
    counts["realtime"] = len(await rt.packs.to_realtime(rt.settings.queue_name, again))
    return counts


async def clean_up(rt: Runtime, pack: Pack) -> None:
    """The pack's batch lines leave storage once its harvest is recorded (a crash before leaves them for
    the re-harvest, which does not need them either)."""
    for job_id in await rt.packs.job_ids(pack.id):
        await rt.storage.delete(line_key(job_id))


async def _take_line(rt: Runtime, pack: Pack, batch: ProviderBatch, job: JobRecord, line: LineResult) -> str:
    takes = (JobStatus.provider_batch, JobStatus.queued)  # queued: sent realtime by a fallback, not run yet
    if job.status not in takes:
        answered_here = bool(job.attempts) and job.attempts[-1].provider_batch == batch.id  # a re-harvest
        if line.ok and pack.fell_back_at is not None and job.batch_id and not answered_here:
            # finished in the batch while its realtime call ran: paid twice; the first answer stays
            await rt.records.redis.hincrby(rt.records.batch_key(job.batch_id), "paid_twice", 1)
            return "paid_twice"
        return "answered" if job.status is JobStatus.succeeded else "failed"
    attempt = Attempt(
        target=pack.target,
        status=line.status_code,
        latency_ms=(time.time() - pack.created_at) * 1000,
        tier="batch",
        provider_batch=batch.id,
    )
    if not line.ok:
        if line.retryable:
            return "again"
        attempt.error = f"{line.error_code}: {line.error_message}"
        job.attempts.append(attempt)
        job.error = JobError(
            type="provider_error",
            message=f"provider batch {batch.id}: {line.error_message or line.error_code}",
            provider_status=line.status_code,
            code=line.error_code,
        )
        await finish(rt, job, JobStatus.failed, from_=job.status, provider_calls=1)
        return "failed"
    from worker.pipeline import load_request

    request = await load_request(job, rt.storage)
    adapter = get_adapter(pack.provider)
    status = line.status_code or 200
    try:
        resp: ProviderResponse = adapter.parse(
            job.kind, request, httpx.Response(status, json=line.body), line.body
        )
        job.result = await store_result(job, request, resp, rt.storage, rt.client)
    except ProviderError as e:
        attempt.error = str(e)
        job.attempts.append(attempt)
        job.error = JobError(type="provider_error", message=str(e), code=e.code)
        await finish(rt, job, JobStatus.failed, from_=job.status, provider_calls=1)
        return "failed"
    job.attempts.append(attempt)
    measured = (job.usage or {}).get("audio_seconds")  # the deposit's, for an answer without a duration
    job.usage = resp.usage
    prices = budget.book_for(rt.prices, rt.native_prices.get(pack.target))  # the target's own, if any
    job.cost = budget.job_cost(
        prices, pack.provider, job.kind, request, resp.usage, audio_seconds=measured, tier="batch"
    )
    job.error = None
    job.resume = None
    await finish(rt, job, JobStatus.succeeded, from_=job.status, remember=True, provider_calls=1)
    return "answered"
