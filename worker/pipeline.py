"""The job function arq runs, as a list of steps: claim (done by the worker's start script, or here) →
cache look-up / single-flight (worker/dedup.py) → media (worker/prepare.py, worker/media_ready.py) →
plan (worker/routes.py) → (the batch tier: a job that can wait joins its provider's next batch,
worker/batch_tier/engine.py) → attempts through the gate (worker/gate.py: rate limits, circuits and the
budgets, worker/budget.py) with retry and fallback → store the result (worker/results.py) → finish
(worker/finish.py: the outcome, with the call's cost added to its batch's and tenant's spending).

It never lets an exception escape except arq's `Retry` (a deferred re-run) and a Redis outage (the run is
abandoned and the job runs again after its lease): every other outcome is written to the job record, so
one bad job can never take down the worker or its batch.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from typing import Any

from arq import Retry

from mmq import tracing
from mmq.cache import answer_from
from mmq.connections import REDIS_DOWN
from mmq.contract import JobError, JobRecord, JobStatus
from mmq.errors import InvalidJob, ProviderError
from mmq.queue import CLAIM_CTX, finish_arq_job
from mmq.record_layout import Claim
from mmq.storage import Storage
from worker import batch_tasks, budget, dedup
from worker.attempts import Defer, call_with_retries
from worker.batch_tier import engine as batch_tier
from worker.finish import Writes, defer, fail, finish
from worker.results import store_result
from worker.runtime import Runtime

log = logging.getLogger("mmq.worker")


async def load_request(job: JobRecord, storage: Storage) -> dict[str, Any]:
    if job.request is not None:
        return job.request  # the spec is never written back, so preparing it in place is safe
    if job.request_key:
        return json.loads(await storage.get(job.request_key))
    raise InvalidJob("job has no request")


@tracing.traced_job
async def run_job(ctx: dict[str, Any], job_id: str) -> dict[str, Any]:
    """claim → cache look-up / single-flight → media → plan → attempts → store → finish."""
    rt: Runtime = ctx["mmq"]
    queue = rt.settings.queue_name
    claim: Claim | None = ctx.get(CLAIM_CTX)  # claimed by mmq's worker as it started the job
    writes = Writes()
    if claim is None:
        # started by arq's own Worker (the stock `arq` command): the job keeps its queue score, which arq
        # moves by a deferral's delay (ZINCRBY) when the job asks to run again later
        claim = await rt.records.claim(job_id, dedup.lock_ttl_s(rt))
    else:
        writes.after.append(functools.partial(finish_arq_job, job_id=job_id, queue_name=queue))
    done = {"arq_finished": bool(writes.after)}  # the finish cleared arq's keys: arq need not
    if claim.job is None:
        if claim.outcome == "missing":
            log.warning("job %s has no record; dropped", job_id)
            return {"ok": False, "error": "no record"}
        return {"ok": True, "status": claim.outcome}  # ended already (a re-run), or cancelled meanwhile
    job = claim.job
    tracing.job_started(job)
    if claim.outcome == "expired":
        job.error = batch_tasks.BATCH_EXPIRED  # its window closed before it could run (again)
        if job.batch_id:
            await rt.records.mark_expired(job.batch_id)  # maybe before the expire job ran: ends `expired`
        await finish(rt, job, JobStatus.failed, from_=job.status, writes=writes)
        return {"ok": False, "status": job.status.value, **done}
    # a lock claim took is this job's to release if it fails, even before its own look-up runs
    lookup = dedup.Lookup(leader=claim.cache == "lead")
    try:
        async with asyncio.timeout(max(1.0, rt.settings.job_timeout_s - 5)):
            request = await load_request(job, rt.storage)
            lookup = await dedup.look_up(rt, job, request, claim.cache)
            if lookup.entry is not None:
                answer_from(job, lookup.entry)
                await finish(rt, job, JobStatus.succeeded, writes=writes)
                return {"ok": True, "status": job.status.value, "cached": True, **done}
            if lookup.wait_s is not None:
                raise Defer(lookup.wait_s, job.resume)  # an identical job is calling the provider
            resp = await call_with_retries(rt, job, request, lookup.prefetched, writes)
            job.result = await store_result(job, request, resp, rt.storage, rt.client)
            job.resume = None
            media = (job.usage or {}).get("media")
            job.usage = {**(resp.usage or {}), "media": media} if media else resp.usage
            job.error = None
            await finish(rt, job, JobStatus.succeeded, remember=True, writes=writes)
            return {"ok": True, "status": job.status.value, **done}
    except Defer as d:
        job.resume = d.resume
        await defer(rt, job)
        raise Retry(defer=d.seconds) from None  # the job stays arq's: it runs again
    except batch_tier.Deposit as d:
        await batch_tier.deposit(rt, job, d, writes)
        if lookup.leader:
            await dedup.give_up_lead(rt, job)  # a duplicate may not wait hours for this one
        return {"ok": True, "status": JobStatus.provider_batch.value, **done}
    except budget.OverBudget as over:
        # mmq's worker: the park moves arq's entry too (one atomic step, so no wake-up is lost to a
        # re-queue after it); arq's own worker re-queues the job itself
        own_queue = queue if done["arq_finished"] else ""
        if await budget.waits(rt, job, over, own_queue):
            if own_queue:
                return {"ok": True, "status": JobStatus.budget.value, **done}
            raise Retry(defer=budget.PARK_MAX_S) from None
        await fail(rt, job, await budget.exceeded(rt, job, over), writes)
    except InvalidJob as e:
        await fail(rt, job, JobError(type=e.type, message=str(e)), writes)
    except ProviderError as e:
        await fail(
            rt,
            job,
            JobError(
                type="provider_error",
                message=str(e),  # redacted where the attempt failed
                provider_status=e.status,
                code=e.code,
            ),
            writes,
        )
    except TimeoutError:
        timeout = JobError(type="timeout", message=f"job exceeded {rt.settings.job_timeout_s}s")
        await fail(rt, job, timeout, writes)
    except REDIS_DOWN:
        raise  # nothing can be written: the run is abandoned and the job runs again after its lease
    except Exception as e:  # a bug must cost one job, never the worker
        log.exception("job %s crashed", job_id)
        await fail(rt, job, JobError(type="internal", message=f"{type(e).__name__}: {e}"), writes)
    if lookup.leader:
        await dedup.give_up_lead(rt, job)  # a waiting duplicate takes over
    return {"ok": job.status is JobStatus.succeeded, "status": job.status.value, **done}
