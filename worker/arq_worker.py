"""arq's Worker, starting and claiming each mmq job in one round trip and finishing it in the job's own.

arq 0.28 (pinned: maintenance mode) starts a due job with WATCH on its in-progress key, EXISTS, ZSCORE
and a MULTI/PSETEX/EXEC transaction (four round trips for every id it looks at), reads the payload and
counts the try in a fifth, and clears its keys in a sixth when the job ends; mmq's claim and finish are
two more. Here one script (mmq/lua/start.lua) does arq's check-and-set, its payload read and try count,
and mmq's claim, atomically (two workers still never start the same job), and the job's finish clears
arq's keys in its own round trip (mmq.queue.finish_arq_job).

An mmq job holds a short lease (MMQ_JOB_LEASE_S) that a heartbeat renews while it runs, so a crashed
worker's jobs run again within seconds, not after arq's in-progress timeout (the longest function
timeout + 10 s: 610 s). Batch tasks (release, expire, notify) and anything else take arq's own path.
Jobs, tries and keys keep arq's formats: a stock arq worker can run the same queue.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from arq import Retry, Worker
from arq.constants import in_progress_key_prefix, job_key_prefix, retry_key_prefix
from arq.jobs import deserialize_job_raw
from arq.utils import ms_to_datetime, timestamp_ms

from mmq import connections, metrics, scripts
from mmq.contract import JobError, JobStatus
from mmq.queue import CLAIM_CTX, JOB_FUNCTION
from mmq.record_layout import Claim, claim_from
from worker import dedup
from worker.reaper import Reaper

WAKE_EVERY_S = 1.0
RESCUE_EVERY_S = 5.0
log = logging.getLogger("arq.worker")

# what a Redis restart or network cut raises (the socket's own errors too): the worker waits, carries on
REDIS_DOWN = (*connections.REDIS_DOWN, ConnectionError, OSError)


class OneTripWorker(Worker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._leased: set[str] = set()  # the mmq jobs this worker runs: the heartbeat renews their leases
        self._redis_failures = 0  # polls in a row that could not reach Redis
        self._next_wake = 0.0  # when this worker next sweeps the jobs waiting for a budget
        self._reaper = Reaper()  # seals batches whose submission stopped (worker/reaper.py)
        self._next_rescue = 0.0  # … and the batch tier's lost steps

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """Take as many of `job_ids` as there are free slots (those not running elsewhere, finished or
        deferred) and run each in a task. The start scripts for all free slots go in one pipeline: one
        round trip starts a slot-full of jobs, where arq spends one (four, in arq's own start) per id.
        Like arq, it waits for a slot when none is free, then fills every free one."""
        start = getattr(self, "_mmq_start", None)
        if start is None:
            start = self._mmq_start = scripts.register(self.pool, "start")
        ids = [job_id.decode() for job_id in job_ids]
        while ids:
            await self.sem.acquire()  # at least one slot is free
            self.sem.release()
            free = self.max_jobs - self.job_counter
            if free <= 0:
                return None
            chunk, ids = ids[:free], ids[free:]
            for _ in chunk:
                await self.sem.acquire()  # free permits: never waits
                self.job_counter = self.job_counter + 1
            try:
                pipe = self.pool.pipeline(transaction=False)
                for job_id in chunk:
                    start.queue(pipe, self._start_keys(job_id), self._start_args(job_id))
                answers = await scripts.execute(pipe)
            except BaseException:
                for _ in chunk:  # Redis went away: the slots are free again
                    self.job_counter = self.job_counter - 1
                    self.sem.release()
                raise
            for job_id, out in zip(chunk, answers, strict=True):
                self._run_started(job_id, out)

    def _run_started(self, job_id: str, out: list[Any] | None) -> None:
        """Run a job its start script took (`out`), or give its slot back (running elsewhere, finished or
        deferred)."""
        if not out:
            self.job_counter = self.job_counter - 1
            self.sem.release()
            log.debug("job %s already running elsewhere", job_id)
            return
        score = int(float(out[0]))
        if len(out) > 1:  # an mmq job, claimed
            run = self._run_claimed(job_id, score, out[1], int(out[2]), claim_from(out[3:]))
        else:
            run = self.run_job(job_id, score)
        task = self.loop.create_task(run)
        task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
        self.tasks[job_id] = task

    async def _poll_iteration(self) -> None:
        """arq's poll, carrying on through a Redis restart: arq's own worker exits on the first
        ConnectionError. Jobs running meanwhile that could not reach Redis were left as they were and
        run again when their leases lapse (see `_run_claimed`)."""
        try:
            await super()._poll_iteration()
            await self._wake_budget_waiters()
            if (runtime := self.ctx.get("mmq")) is not None:  # rarely: see worker/reaper.py
                await self._reaper.maybe_sweep(runtime)
            await self._rescue_batch_tier()
        except REDIS_DOWN as e:
            self._redis_failures += 1
            pause = min(5.0, 0.25 * 2 ** min(self._redis_failures, 5))
            log.warning("Redis unreachable (%s: %s); retrying in %.1f s", type(e).__name__, e, pause)
            await asyncio.sleep(pause)
        else:
            if self._redis_failures:
                log.warning("Redis reachable again")
            self._redis_failures = 0

    async def _wake_budget_waiters(self) -> None:
        """About once a second, jobs waiting for a budget whose time has come (a raise, spending that
        settled, a new day) go back to the head of the queue (mmq/lua/wake.lua): one small call."""
        runtime = self.ctx.get("mmq")
        now = time.monotonic()
        if runtime is None or now < self._next_wake:
            return
        self._next_wake = now + WAKE_EVERY_S
        woken = await runtime.budgets.wake_due(self.queue_name)
        if woken:
            log.info("%d job(s) waiting for a budget check it again", woken)

    async def _rescue_batch_tier(self) -> None:
        """Every few seconds, the batch tier's steps that died with their worker are run again."""
        runtime = self.ctx.get("mmq")
        now = time.monotonic()
        if runtime is None or now < self._next_rescue:
            return
        self._next_rescue = now + RESCUE_EVERY_S
        from worker.batch_tier.engine import rescue  # the engine imports the pipeline, loaded by then

        await rescue(runtime)

    def _start_keys(self, job_id: str) -> list[str]:
        runtime = self.ctx.get("mmq")
        job_key = runtime.records.job_key(job_id) if runtime is not None else ""
        return [
            in_progress_key_prefix + job_id,
            self.queue_name,
            job_key_prefix + job_id,
            retry_key_prefix + job_id,
            job_key,  # '' (no runtime: a bare arq worker in a test) exists nowhere: arq's own path
        ]

    def _start_args(self, job_id: str) -> list[Any]:
        runtime = self.ctx.get("mmq")
        prefix, lock_ms = "", 0
        if runtime is not None:
            prefix, lock_ms = runtime.records.prefix, int(dedup.lock_ttl_s(runtime) * 1000)
        in_progress_ms = int(self.in_progress_timeout_s * 1000)
        return [job_id, timestamp_ms(), in_progress_ms, repr(time.time()), prefix, lock_ms, self._lease_ms()]

    def _lease_ms(self) -> int:
        runtime = self.ctx.get("mmq")
        return int(
            (runtime.settings.job_lease_s if runtime is not None else self.in_progress_timeout_s) * 1000
        )

    async def main(self) -> None:
        beat = asyncio.ensure_future(self._heartbeat())
        try:
            await super().main()
        finally:
            beat.cancel()

    async def _heartbeat(self) -> None:
        """Every quarter lease, renew the lease of every mmq job this worker runs, in one round trip: its
        in-progress key and its queue score move one lease ahead. A job whose worker died stops being
        renewed and comes due one lease after the last beat, where any worker starts it again."""
        while True:
            await asyncio.sleep(max(0.05, self._lease_ms() / 4000))
            running = list(self._leased)
            if not running:
                continue
            lease_ms = self._lease_ms()
            due = timestamp_ms() + lease_ms
            try:
                async with self.pool.pipeline(transaction=False) as pipe:
                    for job_id in running:
                        pipe.pexpire(in_progress_key_prefix + job_id, lease_ms)
                    # XX: a job that ended meanwhile has left the queue and stays out
                    pipe.zadd(self.queue_name, dict.fromkeys(running, due), xx=True)
                    await pipe.execute()
            except Exception:  # Redis away for a moment: the next beat tries again, well within the lease
                log.warning("could not renew %d job leases", len(running), exc_info=True)

    async def _run_claimed(self, job_id: str, score: int, payload: bytes, job_try: int, claim: Claim) -> None:
        """What arq's `run_job` does for an mmq job, with the payload, try and claim already in hand. The
        job function never raises except arq's Retry (a deferral): every outcome is in the job record."""
        finished = False
        try:
            function_name, args, kwargs, _, enqueue_ms = deserialize_job_raw(
                payload, deserializer=self.job_deserializer
            )
            function = self.functions[function_name]
            if function_name != JOB_FUNCTION:
                raise ValueError(f"an mmq job record names arq function {function_name!r}")
            max_tries = self.max_tries if function.max_tries is None else function.max_tries
            if job_try > max_tries:
                raise RuntimeError(f"started {job_try} times (max {max_tries})")
        except Exception as e:  # a corrupt payload or a runaway job: it fails, the worker carries on
            log.exception("job %s cannot run", job_id)
            await asyncio.shield(self._fail_claimed(job_id, claim, f"{type(e).__name__}: {e}"))
            return
        ctx = {
            **self.ctx,
            "job_id": job_id,
            "job_try": job_try,
            "enqueue_time": ms_to_datetime(enqueue_ms),
            "score": score,
            CLAIM_CTX: claim,
        }
        timeout_s = self.job_timeout_s if function.timeout_s is None else function.timeout_s
        self._leased.add(job_id)
        metrics.JOBS_RUNNING.inc()
        self.job_tasks[job_id] = task = self.loop.create_task(function.coroutine(ctx, *args, **kwargs))
        log.debug("→ %s:%s try=%d", job_id, function_name, job_try)
        try:
            result = await asyncio.wait_for(task, timeout_s)
        except Retry as e:
            self._leased.discard(job_id)
            self.jobs_retried += 1
            await asyncio.shield(self._run_again(job_id, (e.defer_score or 0) / 1000))
            return
        except asyncio.CancelledError:
            # the worker is stopping: the job runs again (elsewhere) straight away, as with arq
            self._leased.discard(job_id)
            self.jobs_retried += 1
            await asyncio.shield(self._run_again(job_id, 0.0))
            raise
        except REDIS_DOWN as e:
            # the job could not write its outcome: nothing is lost, its lease lapses and it runs again
            log.warning("job %s left to run again: Redis unreachable (%s)", job_id, e)
            self.job_tasks.pop(job_id, None)
            self._leased.discard(job_id)
            return
        except Exception as e:  # arq's timeout, or a bug past the job function's own guard
            log.exception("job %s failed outside its own handling", job_id)
            self.job_tasks.pop(job_id, None)
            self._leased.discard(job_id)
            await asyncio.shield(self._fail_claimed(job_id, claim, f"{type(e).__name__}: {e}"))
            return
        else:
            self.jobs_complete += 1
            finished = isinstance(result, dict) and bool(result.get("arq_finished"))
        finally:
            self.job_tasks.pop(job_id, None)
            self._leased.discard(job_id)
            metrics.JOBS_RUNNING.dec()
        if not finished:
            try:
                await asyncio.shield(self.finish_job(job_id, True, None, None, False, None, None))
            except REDIS_DOWN as e:  # its record has ended; arq's keys lapse with the lease
                log.warning("job %s: arq's keys not cleared, Redis unreachable (%s)", job_id, e)

    async def _run_again(self, job_id: str, delay_s: float) -> None:
        """Re-queue a started job to run `delay_s` from now. Its claim moved its score to its lease's end,
        so the new score is set outright (arq's ZINCRBY would add the delay to the lease)."""
        async with self.pool.pipeline(transaction=True) as tr:
            tr.delete(in_progress_key_prefix + job_id)
            tr.zadd(self.queue_name, {job_id: timestamp_ms() + int(delay_s * 1000)}, xx=True)
            await tr.execute()

    async def _fail_claimed(self, job_id: str, claim: Claim, message: str) -> None:
        runtime = self.ctx.get("mmq")
        job = claim.job
        if runtime is not None and job is not None:
            job.error = JobError(type="internal", message=message)
            job.finished_at = time.time()
            await runtime.records.finish(job, (JobStatus.queued, JobStatus.running), JobStatus.failed)
        self.jobs_failed += 1
        await self.finish_job(job_id, True, None, None, False, None, None)
