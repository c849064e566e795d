"""The arq side of a job: its serializer, and enqueueing many jobs in one pipeline.

arq's own `enqueue_job` costs three round trips per job (WATCH, EXISTS, MULTI/EXEC) to protect against
duplicate ids. Our job ids are fresh random ids, so that check buys nothing; we queue the very same two
writes arq would make (PSETEX of the serialized job, ZADD to the queue) on a pipeline and send a whole
chunk of jobs at once. The payload is built by arq's own `serialize_job`, so the format stays arq's.
arq is pinned to 0.28.0; tests/e2e proves its worker runs jobs enqueued this way.
"""

from __future__ import annotations

import json
import time
from json.encoder import encode_basestring_ascii
from typing import Any

from arq.constants import abort_jobs_ss, in_progress_key_prefix, job_key_prefix, retry_key_prefix
from arq.jobs import serialize_job

JOB_FUNCTION = "run_job"
RELEASE_FUNCTION = "release_batch"  # a scheduled batch's window opens: enqueue its jobs
EXPIRE_FUNCTION = "expire_batch"  # its deadline passed: expire what has not run
NOTIFY_FUNCTION = "notify_batch"  # it ended: POST the webhook
BATCH_TASK_TIMEOUT_S = 600  # release/expire walk a whole batch
WEBHOOK_TIMEOUT_S = 60


# In an arq job's ctx: the Claim mmq's worker made while starting the job (worker/arq_worker.py); the job
# function then skips its own claim, and its finish clears arq's keys too (`finish_arq_job`).
CLAIM_CTX = "mmq_claim"


def finish_arq_job(pipe: Any, job_id: str, queue_name: str) -> None:
    """Queue on `pipe` what arq's `finish_job` writes for a job that ended and keeps no arq result: its
    in-progress, try and payload keys go, and it leaves the queue. Sent with the job's own finish, it
    saves arq's separate MULTI/EXEC round trip."""
    pipe.delete(in_progress_key_prefix + job_id, retry_key_prefix + job_id, job_key_prefix + job_id)
    pipe.zrem(abort_jobs_ss, job_id)
    pipe.zrem(queue_name, job_id)


def in_progress_s(job_timeout_s: float) -> float:
    """How long arq's in-progress key keeps a started job from starting again: the longest function
    timeout + 10 s (arq.worker). A dead worker's job runs again after this."""
    return max(job_timeout_s, BATCH_TASK_TIMEOUT_S, WEBHOOK_TIMEOUT_S) + 10


# arq runs due jobs in score order (the enqueue time, in ms). Scoring a job as if it had been queued
# earlier puts it ahead: every due high job before any normal one (queued in the last ~115 days), every
# normal before any low. Future scores are deferrals, so a priority never makes a job early.
PRIORITY_LEAD_MS = {"high": 2 * 10**10, "normal": 10**10, "low": 0}
# arq's default job-key TTL is one day, which also bounds retries; a rate-limited night batch of a
# million images can run longer than that.
JOB_EXPIRES_MS = 7 * 24 * 3600 * 1000


def serialize(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=str).encode()


def deserialize(data: bytes) -> dict[str, Any]:
    return json.loads(data)


def score_for(priority: str, now_ms: int) -> int:
    return now_ms - PRIORITY_LEAD_MS[priority]


def enqueue(
    pipe: Any,
    job_id: str,
    queue_name: str,
    defer_until_ms: int | None = None,
    *,
    priority: str = "normal",
    function: str = JOB_FUNCTION,
    arq_id: str | None = None,
) -> None:
    """Queue the arq writes for `function(job_id)` on `pipe` (executed by the caller). `arq_id`: the arq
    job id when it differs from the argument (one release/expire/notify job per batch)."""
    now_ms = int(time.time() * 1000)
    score = defer_until_ms if defer_until_ms and defer_until_ms > now_ms else score_for(priority, now_ms)
    payload = serialize_job(function, (job_id,), {}, None, now_ms, serializer=serialize)
    key = arq_id or job_id
    pipe.psetex(job_key_prefix + key, JOB_EXPIRES_MS + max(0, score - now_ms), payload)
    pipe.zadd(queue_name, {key: score})


def enqueue_many(pipe: Any, job_ids: list[str], queue_name: str, *, priority: str = "normal") -> None:
    """`enqueue` for many due jobs: one PSETEX each, one ZADD for all (the ZADD last, so no worker
    sees a job before its payload)."""
    if not job_ids:
        return
    now_ms = int(time.time() * 1000)
    score = score_for(priority, now_ms)
    head, tail = _payload_around_id(now_ms)
    for job_id in job_ids:
        # encode_basestring_ascii is json.dumps of a string (serialize's JSON), without an encoder per call
        payload = head + encode_basestring_ascii(job_id).encode() + tail
        pipe.psetex(job_key_prefix + job_id, JOB_EXPIRES_MS, payload)
    pipe.zadd(queue_name, dict.fromkeys(job_ids, score))


_ID_MARK = "\x00mmq-job-id\x00"


def _payload_around_id(now_ms: int) -> tuple[bytes, bytes]:
    """arq's payload of `run_job(<id>)` enqueued at `now_ms`, made by arq's own serialize_job once for a
    whole chunk and split around the id's JSON: a job's payload is then the same bytes serialize_job
    gives (tests/mmq/test_records_layout.py holds it) for a concatenation, not a dict and a dumps per job."""
    payload = serialize_job(JOB_FUNCTION, (_ID_MARK,), {}, None, now_ms, serializer=serialize)
    head, tail = payload.split(json.dumps(_ID_MARK).encode())
    return head, tail


async def schedule(
    redis: Any, queue_name: str, function: str, batch_id: str, at: float | None = None
) -> None:
    """Queue `function(batch_id)` (a batch task: release, expire, notify) to run at `at` (epoch s; now
    when None or past)."""
    pipe = redis.pipeline(transaction=False)
    prefix = function.split("_")[0]
    enqueue(
        pipe,
        batch_id,
        queue_name,
        int(at * 1000) if at else None,
        priority="high",  # bookkeeping goes before the jobs it is about
        function=function,
        arq_id=f"{prefix}:{batch_id}",
    )
    await pipe.execute()
