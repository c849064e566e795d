"""The last step of a job: its outcome, its batch's counters and end, and what rides along, in one round
trip; then one log line and the metrics for it.

Whatever ended the job (an answer, a cache hit, a failure, an expired window) ends here, so the order of
the writes is decided once: the last call's settle, the outcome, the cache entry (never before the
outcome: a re-run must not answer itself from its own entry) and arq's clean-up (the job leaves arq only
once its record has ended). A deferral's move (`defer`: the job waits `queued`) is here too, as it ends
the job `cancelled` when its batch is being cancelled.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mmq import metrics, scripts
from mmq.contract import JobError, JobRecord, JobStatus
from worker import batch_tasks, dedup
from worker.runtime import Runtime

log = logging.getLogger("mmq.worker")


@dataclass
class Writes:
    """Writes that ride with a job's finish in its one round trip: `before` it, the last call's settle;
    `after` it, arq's clean-up (the job leaves arq only once its record has ended)."""

    before: list[Callable[[Any], None]] = field(default_factory=list)
    after: list[Callable[[Any], None]] = field(default_factory=list)
    reservation: str = ""  # the last call's hold on budgets: given back by the finish, after its cost


async def finish(
    rt: Runtime,
    job: JobRecord,
    to: JobStatus,
    from_: JobStatus = JobStatus.running,
    *,
    remember: bool = False,
    writes: Writes | None = None,
    provider_calls: int = 0,
) -> None:
    """The job's outcome, its batch's counters and end, the `writes` that ride along and (`remember`:
    after a provider answer) its cache entry with the single-flight lock released: one round trip.
    `provider_calls`: calls to add to the batch's count here (the batch tier's lines; a realtime call is
    counted as it goes)."""
    job.finished_at = time.time()
    writes = writes or Writes()
    pipe = rt.records.redis.pipeline(transaction=False)
    for queue_write in writes.before:
        queue_write(pipe)
    # its calls were counted as they went; its cost is added to its batch's and tenant's spending here
    await rt.records.finish(job, (from_,), to, provider_calls, reservation=writes.reservation, pipe=pipe)
    at = len(pipe.command_stack) - 1
    if remember:
        # after the outcome: an entry must never exist for a job whose own record did not end (a Redis
        # restart between the two made the re-run answer itself from its own entry)
        dedup.remember(rt, job, pipe)
    for queue_write in writes.after:
        queue_write(pipe)
    outcome = (await scripts.execute(pipe))[at]
    log_outcome(job, to)
    metrics.JOBS_FINISHED.labels(job.kind.value, to.value, "yes" if job.cached else "no").inc()
    if job.cached:
        metrics.CACHE_HITS.labels(job.cache.level.value if job.cache else "exact").inc()
    if (outcome.decode() if isinstance(outcome, bytes) else outcome) == "ended" and job.batch_id:
        await batch_tasks.batch_ended(rt, job.batch_id)


async def defer(rt: Runtime, job: JobRecord) -> None:
    """A deferred job's record, before it leaves its slot (arq's Retry): its state saved and its status
    `queued` while it waits, so a cancel reaches it (it counted as running, and a cancel of a batch whose
    targets were all down stayed `cancelling` until each job ran again); a job whose batch is cancelling
    is cancelled here, and its re-run finds nothing to do. One round trip (Records.defer)."""
    outcome = await rt.records.defer(job)
    if outcome in ("cancelled_now", "ended"):
        job.finished_at = time.time()
        log_outcome(job, JobStatus.cancelled)
        metrics.JOBS_FINISHED.labels(job.kind.value, JobStatus.cancelled.value, "no").inc()
    if outcome == "ended" and job.batch_id:
        await batch_tasks.batch_ended(rt, job.batch_id)


def log_outcome(job: JobRecord, to: JobStatus) -> None:
    """One line per job outcome, with its ids as fields (mmq/logs.py writes them as JSON keys)."""
    fields: dict[str, Any] = {
        "job_id": job.id,
        "batch_id": job.batch_id,
        "tenant": job.tenant,
        "kind": job.kind.value,
        "status": to.value,
        "cached": job.cached,
        "attempts": sum(a.repeats for a in job.attempts),
        "cost_usd": job.cost.usd if job.cost is not None else None,
        "seconds": round((job.finished_at or 0) - (job.started_at or job.finished_at or 0), 3),
    }
    if job.error is not None:
        fields |= {"error_type": job.error.type, "error": job.error.message}
    message = f"job {job.id} {to.value}" + (f": {job.error.type}: {job.error.message}" if job.error else "")
    log.info(message, extra=fields)


async def fail(rt: Runtime, job: JobRecord, error: JobError, writes: Writes | None = None) -> None:
    job.error = error
    await finish(rt, job, JobStatus.failed, writes=writes)
