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
from typing import Any

from arq.constants import job_key_prefix
from arq.jobs import serialize_job

JOB_FUNCTION = "run_job"
# arq's default job-key TTL is one day, which also bounds retries; a rate-limited night batch of a
# million images can run longer than that.
JOB_EXPIRES_MS = 7 * 24 * 3600 * 1000


def serialize(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=str).encode()


def deserialize(data: bytes) -> dict[str, Any]:
    return json.loads(data)


def enqueue(pipe: Any, job_id: str, queue_name: str, defer_until_ms: int | None = None) -> None:
    """Queue the arq writes for `run_job(job_id)` on `pipe` (executed by the caller)."""
    now_ms = int(time.time() * 1000)
    score = defer_until_ms or now_ms
    payload = serialize_job(JOB_FUNCTION, (job_id,), {}, None, now_ms, serializer=serialize)
    pipe.psetex(job_key_prefix + job_id, JOB_EXPIRES_MS + max(0, score - now_ms), payload)
    pipe.zadd(queue_name, {job_id: score})
