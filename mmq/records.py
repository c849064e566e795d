"""Job and batch records in Redis: the source of truth for status (never arq's internals).

Keys: mmq/keys.py; the fields' encoding: mmq/record_layout.py. A job is a hash of small state fields
that change (`status`, `attempts`, `result`, `usage`, `error`, times…) beside its immutable `spec` (the
request or its storage reference, custom_id, kind, options), written once at submit. A status change
writes only what changed, never the whole record.

A batch job's spec is not in its own hash but a field of its batch's `specs` hash (keyed by the job id),
without what the batch already holds: its id, its tenant and its routing config are read from the batch
(`claim` adds them to the fields it returns); its kind is left out when it is chat, the default there.
The job's own hash then holds only small values, which Redis packs in one allocation (a listpack): ~250 B
a queued job, where a hash holding a 200-byte spec is a table of separately allocated entries, ~950 B.
A job outside any batch keeps its whole spec (id, tenant and config included) in its own hash.

Status changes go through Lua scripts (mmq/lua) so a job's status and its batch's counters move
together, a re-run (arq is at-least-once) never counts twice, and a batch ends in the same call as its
last job: `claim` (queued → running, returning everything the worker needs), `finish` (the outcome),
`defer` (running → queued while a deferred job waits), `end_queued` (cancel/expire), `requeue_failed`,
`seal`, `start_cancel`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from redis.asyncio import Redis

from mmq import scripts
from mmq.contract import (
    BatchCounts,
    BatchRecord,
    BatchStatus,
    JobError,
    JobRecord,
    JobStatus,
    OnBudget,
    Tier,
)
from mmq.keys import Keys
from mmq.record_layout import (
    BATCH_COUNTERS,
    Claim,
    JobRow,
    as_text,
    batch_row,
    claim_from,
    job_from_fields,
    looks_up_at_claim,
    spec_json,
    state_fields,
)


class Records:
    def __init__(self, redis: Redis, prefix: str = "mmq") -> None:
        self.redis = redis
        self.prefix = prefix
        self.keys = Keys(prefix)
        self._claim = scripts.register(redis, "claim")
        self._finish = scripts.register(redis, "finish")
        self._seal = scripts.register(redis, "seal")
        self._end_queued = scripts.register(redis, "end_queued")
        self._requeue_failed = scripts.register(redis, "requeue_failed")
        self._start_cancel = scripts.register(redis, "start_cancel")
        self._defer = scripts.register(redis, "defer")

    # ------------------------------------------------------------------ keys
    def job_key(self, job_id: str) -> str:
        return self.keys.job(job_id)

    def batch_key(self, batch_id: str) -> str:
        return self.keys.batch(batch_id)

    def batch_jobs_key(self, batch_id: str) -> str:
        return self.keys.batch_jobs(batch_id)

    def batch_specs_key(self, batch_id: str) -> str:
        return self.keys.batch_specs(batch_id)

    def tenant_batches_key(self, tenant: str) -> str:
        return self.keys.tenant_batches(tenant)

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
                **({"max_cost": batch.max_cost_micro_usd} if batch.max_cost_micro_usd is not None else {}),
                **({"on_budget": batch.on_budget.value} if batch.on_budget is not OnBudget.wait else {}),
                **({"tier": batch.tier.value} if batch.tier is not Tier.realtime else {}),
                **({"config": json.dumps(batch.config)} if batch.config is not None else {}),
                **{c: 0 for c in BATCH_COUNTERS},
            },
        )
        pipe.zadd(self.tenant_batches_key(batch.tenant), {batch.id: batch.created_at})
        # being submitted until its seal: a worker seals it if its submission stalls (mmq/submissions.py)
        pipe.zadd(self.keys.submitting(), {batch.id: int(batch.created_at * 1000)})

    def set_batch_config(self, pipe: Any, batch_id: str, config: dict[str, Any] | None) -> None:
        """The routing config every job of the batch runs with (stored once, read by `claim`)."""
        if config is None:
            pipe.hdel(self.batch_key(batch_id), "config")
        else:
            pipe.hset(self.batch_key(batch_id), "config", json.dumps(config))

    def _put_record(self, pipe: Any, job: JobRecord) -> None:
        """A job outside any batch: its whole spec in its own hash."""
        fields = {k: v for k, v in state_fields(job).items() if v}
        fields["spec"] = spec_json(job, with_config=True)
        fields["status"] = job.status.value
        if looks_up_at_claim(job):
            fields["cache_lookup"] = "1"
        pipe.hset(self.job_key(job.id), mapping=fields)

    def add_rows(self, pipe: Any, batch_id: str, rows: list[JobRow]) -> None:
        """A chunk of one batch's new jobs: a hash each, then one HSET of their specs, one RPUSH and one
        HINCRBY per counter for the whole chunk (a 100k-line submit sends ~1 command per job besides
        arq's; the caller's enqueue goes after them, so no worker sees a job before its record)."""
        if not rows:
            return
        counts: dict[str, int] = {"total": len(rows)}
        for row in rows:
            pipe.hset(self.job_key(row.id), mapping=row.fields)
            counts[row.status] = counts.get(row.status, 0) + 1
            counts["cached"] = counts.get("cached", 0) + row.cached
        pipe.hset(self.batch_specs_key(batch_id), mapping={row.id: row.spec for row in rows})
        pipe.rpush(self.batch_jobs_key(batch_id), *(row.id for row in rows))
        bkey = self.batch_key(batch_id)
        for counter, n in counts.items():
            if n:
                pipe.hincrby(bkey, counter, n)

    def add_jobs(self, pipe: Any, batch_id: str, jobs: list[JobRecord]) -> None:
        """`add_rows` for a chunk of one batch's job records."""
        self.add_rows(pipe, batch_id, [batch_row(job) for job in jobs])

    def add_job(self, pipe: Any, job: JobRecord) -> None:
        """Queue the writes for a new job on a pipeline (the caller executes it)."""
        if job.batch_id:
            self.add_jobs(pipe, job.batch_id, [job])
        else:
            self._put_record(pipe, job)

    async def seal_batch(self, batch_id: str, invalid_lines: int = 0) -> bool:
        """Marks every line submitted; returns True if that ended the batch (nothing left to run)."""
        pipe = self.redis.pipeline(transaction=False)
        self._seal.queue(pipe, [self.batch_key(batch_id)], [repr(time.time()), invalid_lines])
        pipe.zrem(self.keys.submitting(), batch_id)  # no longer being submitted (mmq/submissions.py)
        outcome, _ = await scripts.execute(pipe)
        return as_text(outcome) == "ended"

    # ------------------------------------------------------------------ the worker's moves
    async def claim(
        self, job_id: str, lock_ttl_s: float = 600.0, *, queue: str = "", lease_s: float = 0.0
    ) -> Claim:
        """queued → running in one round trip, returning the job (with its batch's config) and, for a job
        keyed at submit, the cache's answer (taking the single-flight lock for `lock_ttl_s` on a miss).
        `queue`: the arq queue, where the running job's score moves `lease_s` ahead (see claim.lua)."""
        args = [repr(time.time()), self.prefix, job_id, int(lock_ttl_s * 1000), queue, int(lease_s * 1000)]
        return claim_from(await self._claim([self.job_key(job_id)], args))

    def spend_keys(self, tenant: str, at: float | None = None) -> tuple[str, str]:
        """A tenant's spend hashes for the UTC day and month of `at` (now)."""
        return self.keys.tenant_spend(tenant, at if at is not None else time.time())

    def finish_args(
        self,
        job: JobRecord,
        allowed_from: Iterable[JobStatus],
        to: JobStatus,
        provider_calls: int = 0,
        reservation: str = "",
    ) -> tuple[list[str], list[Any]]:
        job.status = to
        fields = state_fields(job)
        now = time.time()
        args: list[Any] = [
            ",".join(s.value for s in allowed_from),
            to.value,
            repr(now),
            "1" if job.cached and to is JobStatus.succeeded else "0",
            str(provider_calls),
            str(job.cost.micro_usd) if job.cost is not None else "0",
            reservation,
            str(job.cost.saved_micro_usd) if job.cost is not None else "0",
        ]
        for name, value in fields.items():
            args += [name, value]
        keys = [
            self.job_key(job.id),
            self.batch_key(job.batch_id) if job.batch_id else "",
            *self.spend_keys(job.tenant, now),
            *self.keys.budget_held(),
            self.keys.budget_waiting(),
        ]
        return keys, args

    async def finish(
        self,
        job: JobRecord,
        allowed_from: Iterable[JobStatus],
        to: JobStatus,
        provider_calls: int = 0,
        *,
        reservation: str = "",
        pipe: Any = None,
    ) -> str:
        """Move `job` to `to` if it is in one of `allowed_from`, writing its state; `provider_calls` (made
        by this job) are added to its batch, and its cost to its batch's and its tenant's spending;
        `reservation` (its last call's hold on budgets) is given back. With `pipe`, the call is queued
        there (the caller executes it and reads the outcome) so other writes can share its round trip.

        Returns 'ended' (this ended the batch), 'ok', 'missing', or the status that blocked the move."""
        keys, args = self.finish_args(job, allowed_from, to, provider_calls, reservation)
        if pipe is not None:
            self._finish.queue(pipe, keys, args)
            return "queued"
        return as_text(await self._finish(keys, args))

    async def save(self, job: JobRecord) -> None:
        """Persist state details (attempts, resume, cache key) without a status change."""
        fields = state_fields(job)
        keep = {k: v for k, v in fields.items() if v}
        gone = [k for k, v in fields.items() if not v]
        pipe = self.redis.pipeline(transaction=False)
        if keep:
            pipe.hset(self.job_key(job.id), mapping=keep)
        if gone:
            pipe.hdel(self.job_key(job.id), *gone)
        await pipe.execute()

    async def defer(self, job: JobRecord) -> str:
        """A running job leaves its slot to run again later (a deferral): its state saved (as `save`) and
        its status `queued`, where a cancel or an expiry reaches it and the claim takes it again; or
        `cancelled`, when its batch is cancelling. One round trip, its batch's counters with it
        (mmq/lua/defer.lua). Returns 'deferred' (queued), 'cancelled_now', 'ended' (cancelled, and its
        batch ended), 'missing', or the status of a job that was not running (nothing written)."""
        args: list[Any] = [repr(time.time())]
        for name, value in state_fields(job).items():
            args += [name, value]
        keys = [self.job_key(job.id), self.batch_key(job.batch_id) if job.batch_id else ""]
        outcome = as_text(await self._defer(keys, args))
        if outcome == "deferred":
            job.status = JobStatus.queued
        elif outcome in ("cancelled_now", "ended"):
            job.status = JobStatus.cancelled
        return outcome

    # ------------------------------------------------------------------ reads
    async def get_job(self, job_id: str) -> JobRecord | None:
        [job] = await self.get_jobs([job_id])
        return job

    async def get_jobs(self, job_ids: list[str], *, with_config: bool = False) -> list[JobRecord | None]:
        """Records in the order asked (None where a job does not exist). `with_config`: a batch's jobs
        carry their batch's routing config. A batch job's spec and tenant are read from its batch: one
        more round trip for the call, one HMGET of specs per batch."""
        if not job_ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(self.job_key(job_id))
        rows = await pipe.execute()
        # batch id → positions of its jobs whose spec is the batch's (with_config: every job of a batch)
        of_batch: dict[str, list[int]] = {}
        for i, row in enumerate(rows):
            if row and b"batch" in row and (with_config or b"spec" not in row):
                of_batch.setdefault(as_text(row[b"batch"]), []).append(i)
        configs: dict[str, Any] = {}
        if of_batch:
            pipe = self.redis.pipeline(transaction=False)
            for batch_id, positions in of_batch.items():
                pipe.hmget(self.batch_key(batch_id), "tenant", "config")
                pipe.hmget(self.batch_specs_key(batch_id), [job_ids[i] for i in positions])
            answers = iter(await pipe.execute())
            for batch_id, positions in of_batch.items():
                (tenant, configs[batch_id]), specs = next(answers), next(answers)
                for i, spec in zip(positions, specs, strict=True):
                    if b"spec" not in rows[i] and spec is not None:
                        rows[i].update({b"spec": spec, b"id": job_ids[i], b"tenant": tenant})
        out: list[JobRecord | None] = []
        for row in rows:
            if not row:
                out.append(None)
                continue
            batch = as_text(row[b"batch"]) if with_config and b"batch" in row else None
            out.append(job_from_fields(row, configs.get(batch) if batch else None))
        return out

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
            interrupted=v.get("interrupted") or None,
            interrupted_at=float(v["interrupted_at"]) if v.get("interrupted_at") else None,
            counts=BatchCounts(**{c: int(v.get(c, 0)) for c in BATCH_COUNTERS}),
            invalid_lines=int(v.get("invalid_lines", 0)),
            metadata=json.loads(v.get("metadata") or "{}"),
            priority=v.get("priority") or "normal",
            not_before=float(v["not_before"]) if v.get("not_before") else None,
            deadline=float(v["deadline"]) if v.get("deadline") else None,
            webhook_url=v.get("webhook_url") or None,
            config=json.loads(v["config"]) if v.get("config") else None,
            max_cost_micro_usd=int(v["max_cost"]) if v.get("max_cost") else None,
            on_budget=v.get("on_budget") or OnBudget.wait,
            tier=v.get("tier") or Tier.realtime,
            spent_micro_usd=int(v.get("spent", 0)),
            reserved_micro_usd=int(v.get("reserved", 0)),
            saved_micro_usd=int(v.get("saved", 0)),
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

    # ------------------------------------------------------------------ cancel, expire, retry
    async def start_cancel(self, batch_id: str) -> str:
        """in_progress → cancelling. Returns the batch's status after the call, or 'missing'."""
        return as_text(await self._start_cancel([self.batch_key(batch_id)]))

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
        error_json = error.model_dump_json() if error else ""
        async for ids in self.iter_batch_job_ids(batch_id, chunk=chunk):
            keys = [self.batch_key(batch_id), *(self.job_key(i) for i in ids)]
            ended += int(await self._end_queued(keys, [repr(time.time()), to.value, error_json]))
        return ended

    async def requeue_failed(self, batch_id: str, chunk: int = 500) -> list[str]:
        """Puts the batch's failed jobs back in `queued` (invalid requests excepted: they cannot succeed)
        and re-opens the batch. Returns the ids to enqueue. Attempts, error and deadline are reset."""
        requeued: list[str] = []
        async for ids in self.iter_batch_job_ids(batch_id, chunk=chunk):
            pipe = self.redis.pipeline(transaction=False)
            for job_id in ids:
                pipe.hmget(self.job_key(job_id), "status", "error")
            chosen = []
            for job_id, (status, error) in zip(ids, await pipe.execute(), strict=True):
                if as_text(status) != JobStatus.failed.value:
                    continue
                if error and json.loads(error).get("type", "").startswith("invalid"):
                    continue
                chosen.append(job_id)
            if not chosen:
                continue
            keys = [self.batch_key(batch_id), *(self.job_key(i) for i in chosen)]
            moved = await self._requeue_failed(keys)
            requeued += [as_text(m) for m in moved]
        return requeued

    async def mark_expired(self, batch_id: str) -> None:
        """The deadline passed: the batch ends as `expired` instead of `completed`."""
        await self.redis.hset(self.batch_key(batch_id), "expired", "1")
