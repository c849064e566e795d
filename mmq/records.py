"""Job and batch records in Redis: the source of truth for status (never arq's internals).

Layout (prefix `mmq` by default):
    {p}:job:{id}              hash  status, data (JobRecord JSON)
    {p}:batch:{id}            hash  tenant, status, sealed, counters, metadata, timestamps
    {p}:batch:{id}:jobs       list  job ids in submission order (the order of the output JSONL)
    {p}:tenant:{t}:batches    zset  batch ids by creation time

Status changes go through one Lua script so the job's status and its batch counters move together,
and a re-run of a job (arq is at-least-once) can never count twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from redis.asyncio import Redis

from mmq.contract import BatchCounts, BatchRecord, BatchStatus, JobError, JobRecord, JobStatus

_COUNTERS = ("total", "queued", "running", "succeeded", "failed", "cancelled", "cached", "provider_calls")

# KEYS: job, batch (may be "")
# ARGV: allowed-from (comma list), to, data JSON, cached(0/1), now, provider calls to add to the batch
_TRANSITION = """
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return 'missing' end
local allowed = false
for s in string.gmatch(ARGV[1], '[^,]+') do if s == cur then allowed = true end end
if not allowed then return cur end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'data', ARGV[3])
if KEYS[2] ~= '' and cur ~= ARGV[2] then
  redis.call('HINCRBY', KEYS[2], cur, -1)
  redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
  if ARGV[4] == '1' then redis.call('HINCRBY', KEYS[2], 'cached', 1) end
  if ARGV[6] ~= '0' then redis.call('HINCRBY', KEYS[2], 'provider_calls', ARGV[6]) end
  local v = redis.call('HMGET', KEYS[2], 'sealed', 'queued', 'running', 'status', 'expired')
  if v[1] == '1' and tonumber(v[2]) == 0 and tonumber(v[3]) == 0 then
    -- a cancelling batch ends as cancelled once its last running job ends; one past its deadline, expired
    local done = (v[5] == '1' and 'expired') or 'completed'
    local ended = (v[4] == 'in_progress' and done) or (v[4] == 'cancelling' and 'cancelled')
    if ended then
      redis.call('HSET', KEYS[2], 'status', ended, 'finished_at', ARGV[5])
      return 'ended'
    end
  end
end
return 'ok'
"""

# KEYS: batch   ARGV: now.  Marks every line submitted; completes the batch if nothing is left.
_SEAL = """
redis.call('HSET', KEYS[1], 'sealed', '1')
local v = redis.call('HMGET', KEYS[1], 'queued', 'running', 'status', 'expired')
if tonumber(v[1]) == 0 and tonumber(v[2]) == 0 then
  local done = (v[4] == '1' and 'expired') or 'completed'
  local ended = (v[3] == 'in_progress' and done) or (v[3] == 'cancelling' and 'cancelled')
  if ended then
    redis.call('HSET', KEYS[1], 'status', ended, 'finished_at', ARGV[1])
    return 'ended'
  end
end
return 'ok'
"""


class Records:
    def __init__(self, redis: Redis, prefix: str = "mmq") -> None:
        self.redis = redis
        self.prefix = prefix
        self._transition = redis.register_script(_TRANSITION)
        self._seal = redis.register_script(_SEAL)

    # ------------------------------------------------------------------ keys
    def job_key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def batch_key(self, batch_id: str) -> str:
        return f"{self.prefix}:batch:{batch_id}"

    def batch_jobs_key(self, batch_id: str) -> str:
        return f"{self.prefix}:batch:{batch_id}:jobs"

    def tenant_batches_key(self, tenant: str) -> str:
        return f"{self.prefix}:tenant:{tenant}:batches"

    # ------------------------------------------------------------------ writes (producer side)
    def add_batch(self, pipe: Any, batch: BatchRecord) -> None:
        pipe.hset(
            self.batch_key(batch.id),
            mapping={
                "tenant": batch.tenant,
                "status": batch.status.value,
                "sealed": "0",
                "metadata": json.dumps(batch.metadata),
                "created_at": repr(batch.created_at),
                "invalid_lines": 0,
                "priority": batch.priority.value,
                "not_before": repr(batch.not_before) if batch.not_before else "",
                "deadline": repr(batch.deadline) if batch.deadline else "",
                "webhook_url": batch.webhook_url or "",
                **{c: 0 for c in _COUNTERS},
            },
        )
        pipe.zadd(self.tenant_batches_key(batch.tenant), {batch.id: batch.created_at})

    def _put_record(self, pipe: Any, job: JobRecord) -> None:
        pipe.hset(self.job_key(job.id), mapping={"status": job.status.value, "data": job.model_dump_json()})

    def add_jobs(self, pipe: Any, batch_id: str, jobs: list[JobRecord]) -> None:
        """`add_job` for a chunk of one batch's jobs: a record each, then one RPUSH and one HINCRBY per
        counter for the whole chunk (a 100k-line submit sends ~2 commands per job instead of ~6)."""
        if not jobs:
            return
        counts: dict[str, int] = {"total": len(jobs)}
        for job in jobs:
            self._put_record(pipe, job)
            counts[job.status.value] = counts.get(job.status.value, 0) + 1
            counts["cached"] = counts.get("cached", 0) + job.cached
        pipe.rpush(self.batch_jobs_key(batch_id), *(job.id for job in jobs))
        bkey = self.batch_key(batch_id)
        for counter, n in counts.items():
            if n:
                pipe.hincrby(bkey, counter, n)

    def add_job(self, pipe: Any, job: JobRecord) -> None:
        """Queue the writes for a new job on a pipeline (the caller executes it)."""
        if job.batch_id:
            self.add_jobs(pipe, job.batch_id, [job])
        else:
            pipe.hset(
                self.job_key(job.id), mapping={"status": job.status.value, "data": job.model_dump_json()}
            )

    async def seal_batch(self, batch_id: str, invalid_lines: int = 0) -> bool:
        """Marks every line submitted; returns True if that ended the batch (nothing left to run)."""
        if invalid_lines:
            await self.redis.hincrby(self.batch_key(batch_id), "invalid_lines", invalid_lines)
        outcome = await self._seal(keys=[self.batch_key(batch_id)], args=[repr(time.time())])
        return (outcome.decode() if isinstance(outcome, bytes) else outcome) == "ended"

    # ------------------------------------------------------------------ transitions (worker side)
    async def transition(
        self, job: JobRecord, allowed_from: Iterable[JobStatus], to: JobStatus, provider_calls: int = 0
    ) -> str:
        """Move `job` to status `to` if it is currently in one of `allowed_from`; `provider_calls` (made
        by this job, counted once when it ends) are added to its batch.

        Returns 'ok', 'missing', or the current status that blocked the move.
        """
        job.status = to
        outcome = await self._transition(
            keys=[self.job_key(job.id), self.batch_key(job.batch_id) if job.batch_id else ""],
            args=[
                ",".join(s.value for s in allowed_from),
                to.value,
                job.model_dump_json(),
                "1" if job.cached and to is JobStatus.succeeded else "0",
                repr(time.time()),
                str(provider_calls),
            ],
        )
        return outcome.decode() if isinstance(outcome, bytes) else outcome

    async def save(self, job: JobRecord) -> None:
        """Persist record details (attempts, timestamps) without a status change."""
        await self.redis.hset(self.job_key(job.id), "data", job.model_dump_json())

    # ------------------------------------------------------------------ reads
    async def get_job(self, job_id: str) -> JobRecord | None:
        raw = await self.redis.hget(self.job_key(job_id), "data")
        return JobRecord.model_validate_json(raw) if raw else None

    async def get_jobs(self, job_ids: list[str]) -> list[JobRecord | None]:
        if not job_ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hget(self.job_key(job_id), "data")
        return [JobRecord.model_validate_json(raw) if raw else None for raw in await pipe.execute()]

    async def get_batch(self, batch_id: str) -> BatchRecord | None:
        raw = await self.redis.hgetall(self.batch_key(batch_id))
        if not raw:
            return None
        v = {
            k.decode() if isinstance(k, bytes) else k: (x.decode() if isinstance(x, bytes) else x)
            for k, x in raw.items()
        }
        return BatchRecord(
            id=batch_id,
            tenant=v["tenant"],
            status=BatchStatus(v["status"]),
            sealed=v.get("sealed") == "1",
            counts=BatchCounts(**{c: int(v.get(c, 0)) for c in _COUNTERS}),
            invalid_lines=int(v.get("invalid_lines", 0)),
            metadata=json.loads(v.get("metadata") or "{}"),
            priority=v.get("priority") or "normal",
            not_before=float(v["not_before"]) if v.get("not_before") else None,
            deadline=float(v["deadline"]) if v.get("deadline") else None,
            webhook_url=v.get("webhook_url") or None,
            created_at=float(v["created_at"]),
            finished_at=float(v["finished_at"]) if v.get("finished_at") else None,
        )

    async def iter_batch_job_ids(self, batch_id: str, chunk: int = 1000):
        start = 0
        while True:
            ids = await self.redis.lrange(self.batch_jobs_key(batch_id), start, start + chunk - 1)
            if not ids:
                return
            yield [i.decode() if isinstance(i, bytes) else i for i in ids]
            start += chunk

    async def list_batches(self, tenant: str, limit: int = 20) -> list[str]:
        ids = await self.redis.zrevrange(self.tenant_batches_key(tenant), 0, limit - 1)
        return [i.decode() if isinstance(i, bytes) else i for i in ids]

    # ------------------------------------------------------------------ cancel (OpenAI batches API)
    async def start_cancel(self, batch_id: str) -> str:
        """in_progress → cancelling. Returns the batch's status after the call, or 'missing'."""
        outcome = await self.redis.eval(_START_CANCEL, 1, self.batch_key(batch_id))
        return outcome.decode() if isinstance(outcome, bytes) else outcome

    async def cancel_queued(self, batch_id: str, chunk: int = 500) -> int:
        """Cancels the batch's still-queued jobs; running ones finish. Returns how many were cancelled."""
        return await self.end_queued(batch_id, JobStatus.cancelled, chunk=chunk)

    async def end_queued(
        self, batch_id: str, to: JobStatus, error: JobError | None = None, chunk: int = 500
    ) -> int:
        """Ends the batch's still-queued jobs as `to` (cancelled, or failed with `error` when the deadline
        passed); running ones finish. Returns how many were ended.

        One script call per chunk moves the jobs and the counters together (a job a worker claimed
        meanwhile is skipped), and ends the batch once nothing is queued or running."""
        ended = 0
        async for ids in self.iter_batch_job_ids(batch_id, chunk=chunk):
            now = time.time()
            jobs = [j for j in await self.get_jobs(ids) if j is not None and j.status is JobStatus.queued]
            for job in jobs:
                job.status, job.finished_at, job.error = to, now, error
            keys = [self.batch_key(batch_id), *(self.job_key(j.id) for j in jobs)]
            args = [repr(now), to.value, *(j.model_dump_json() for j in jobs)]
            ended += int(await self.redis.eval(_END_QUEUED, len(keys), *keys, *args))
        return ended

    async def requeue_failed(self, batch_id: str, chunk: int = 500) -> list[str]:
        """Puts the batch's failed jobs back in `queued` (invalid requests excepted: they cannot succeed)
        and re-opens the batch. Returns the ids to enqueue. Attempts, error and deadline are reset."""
        requeued: list[str] = []
        async for ids in self.iter_batch_job_ids(batch_id, chunk=chunk):
            jobs = [
                j
                for j in await self.get_jobs(ids)
                if j is not None
                and j.status is JobStatus.failed
                and not (j.error and j.error.type.startswith("invalid"))
            ]
            for job in jobs:
                job.status, job.error, job.attempts, job.resume = JobStatus.queued, None, [], None
                job.started_at = job.finished_at = job.deadline = None
            keys = [self.batch_key(batch_id), *(self.job_key(j.id) for j in jobs)]
            args = [*(j.model_dump_json() for j in jobs)]
            moved = await self.redis.eval(_REQUEUE_FAILED, len(keys), *keys, *args)
            requeued += [m.decode() if isinstance(m, bytes) else m for m in moved]
        return requeued

    async def mark_expired(self, batch_id: str) -> None:
        """The deadline passed: the batch ends as `expired` instead of `completed`."""
        await self.redis.hset(self.batch_key(batch_id), "expired", "1")


# KEYS: batch.  Only a running batch can be cancelled; the caller reads the status it returns.
_START_CANCEL = """
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 'missing' end
if st == 'in_progress' then
  redis.call('HSET', KEYS[1], 'status', 'cancelling')
  return 'cancelling'
end
return st
"""

# KEYS: batch, job...   ARGV: now, the status to end them in, the ended record JSON of each job (same
# order as KEYS[2..])
_END_QUEUED = """
local n = 0
for i = 2, #KEYS do
  if redis.call('HGET', KEYS[i], 'status') == 'queued' then
    redis.call('HSET', KEYS[i], 'status', ARGV[2], 'data', ARGV[i + 1])
    n = n + 1
  end
end
if n > 0 then
  redis.call('HINCRBY', KEYS[1], 'queued', -n)
  redis.call('HINCRBY', KEYS[1], ARGV[2], n)
end
local v = redis.call('HMGET', KEYS[1], 'sealed', 'queued', 'running', 'status', 'expired')
if v[1] == '1' and tonumber(v[2]) == 0 and tonumber(v[3]) == 0 then
  local done = (v[5] == '1' and 'expired') or 'completed'
  local ended = (v[4] == 'in_progress' and done) or (v[4] == 'cancelling' and 'cancelled')
  if ended then redis.call('HSET', KEYS[1], 'status', ended, 'finished_at', ARGV[1]) end
end
return n
"""

# KEYS: batch, job...   ARGV: the queued record JSON of each job.  Returns the job keys' ids it moved.
_REQUEUE_FAILED = """
local moved = {}
for i = 2, #KEYS do
  if redis.call('HGET', KEYS[i], 'status') == 'failed' then
    redis.call('HSET', KEYS[i], 'status', 'queued', 'data', ARGV[i - 1])
    moved[#moved + 1] = string.match(KEYS[i], ':job:(.+)$')
  end
end
if #moved > 0 then
  redis.call('HINCRBY', KEYS[1], 'failed', -#moved)
  redis.call('HINCRBY', KEYS[1], 'queued', #moved)
  redis.call('HSET', KEYS[1], 'status', 'in_progress', 'expired', '0')
  redis.call('HDEL', KEYS[1], 'finished_at')
end
return moved
"""
