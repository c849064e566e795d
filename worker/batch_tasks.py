"""Jobs about a whole batch, run by the same arq workers: open a scheduled window, expire what missed the
deadline, tell a webhook the batch ended.

Each is one arq job per batch (id `release:<batch>`, `expire:<batch>`, `notify:<batch>`), deferred to its
moment by its queue score, so nothing polls and a restart loses nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

from arq import Retry
from standardwebhooks import Webhook

from mmq import queue
from mmq.contract import JobError, JobStatus
from mmq.fetch import FetchPolicy, FetchRefused, post_guarded
from worker.runtime import Runtime

log = logging.getLogger("mmq.worker")

WEBHOOK_TRIES = 8
SIGNATURE_HEADER = "mmq-signature"


async def release_batch(ctx: dict[str, Any], batch_id: str) -> int:
    """A scheduled batch's window opened: enqueue its jobs that are still queued."""
    rt: Runtime = ctx["mmq"]
    batch = await rt.records.get_batch(batch_id)
    if batch is None:
        return 0
    released = 0
    async for ids in rt.records.iter_batch_job_ids(batch_id, chunk=1000):
        jobs = [j for j in await rt.records.get_jobs(ids) if j is not None and j.status is JobStatus.queued]
        pipe = rt.records.redis.pipeline(transaction=False)
        queue.enqueue_many(pipe, [j.id for j in jobs], rt.settings.queue_name, priority=batch.priority.value)
        await pipe.execute()
        released += len(jobs)
    log.info("batch %s: window opened, %d jobs released", batch_id, released)
    return released


BATCH_EXPIRED = JobError(
    type="batch_expired",
    code="batch_expired",
    message="This request could not be executed before the completion window expired.",
)


async def expire_batch(ctx: dict[str, Any], batch_id: str) -> int:
    """The deadline passed: jobs that have not started fail with batch_expired; running ones finish."""
    rt: Runtime = ctx["mmq"]
    batch = await rt.records.get_batch(batch_id)
    if batch is None or batch.status.value not in ("in_progress", "cancelling"):
        return 0
    await rt.records.mark_expired(batch_id)
    expired = await rt.records.end_queued(batch_id, JobStatus.failed, BATCH_EXPIRED)
    log.info("batch %s: deadline passed, %d jobs expired", batch_id, expired)
    after = await rt.records.get_batch(batch_id)
    if after is not None and after.status.value == "expired":
        await batch_ended(rt, batch_id)
    return expired


async def batch_ended(rt: Runtime, batch_id: str) -> None:
    """Whoever ends a batch calls this: the webhook, if the batch has one."""
    batch = await rt.records.get_batch(batch_id)
    if batch is not None and batch.webhook_url:
        await queue.schedule(rt.records.redis, rt.settings.queue_name, queue.NOTIFY_FUNCTION, batch_id)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """`t=<unix s>,v1=<hex HMAC-SHA256 of "<t>.<body>">`: mmq's first signature, still sent so receivers
    built on it keep working; the Standard Webhooks headers (`standard_headers`) are the ones to verify."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def standard_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """`webhook-id`, `webhook-timestamp` and `webhook-signature` per the Standard Webhooks specification,
    signed by its reference library, so a receiver verifies them with any stock implementation. A
    `whsec_<base64>` secret is used as the specification says; any other text is the key as UTF-8."""
    key: str | bytes = secret if secret.startswith("whsec_") else secret.encode()
    signature = Webhook(key).sign(msg_id, datetime.fromtimestamp(timestamp, tz=UTC), body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


async def notify_batch(ctx: dict[str, Any], batch_id: str) -> str:
    """POST the ended batch to its webhook, signed with MMQ_WEBHOOK_SECRET; retried with backoff."""
    rt: Runtime = ctx["mmq"]
    batch = await rt.records.get_batch(batch_id)
    if batch is None or not batch.webhook_url:
        return "no webhook"
    body = json.dumps({"type": f"batch.{batch.status.value}", "data": batch.model_dump(mode="json")}).encode()
    headers = {"content-type": "application/json", "user-agent": "mmq-webhook/1"}
    secret = rt.settings.webhook_secret.get_secret_value() if rt.settings.webhook_secret else ""
    if secret:
        now = int(time.time())
        headers[SIGNATURE_HEADER] = sign(secret, now, body)
        # one id per event, the same on every retry: receivers drop a delivery they have already taken
        headers |= standard_headers(secret, f"{batch.id}.{batch.status.value}", now, body)
    # the URL is the tenant's: the SSRF guard applies (only public addresses, or the operator's receivers)
    policy = FetchPolicy(total_timeout_s=10.0, allow_hosts=frozenset(rt.settings.webhook_allow_hosts))
    try:
        status = await post_guarded(rt.client, batch.webhook_url, body, headers, policy)
        if status < 300:
            return "delivered"
        problem = f"HTTP {status}"
    except FetchRefused as e:
        log.warning("batch %s: webhook not sent: %s", batch_id, e)
        return "refused"
    except Exception as e:  # any network failure is retried like a 5xx
        problem = type(e).__name__
    tries = int(ctx.get("job_try", 1))
    if tries >= WEBHOOK_TRIES:
        log.warning("batch %s: webhook gave up after %d tries (%s)", batch_id, tries, problem)
        return "gave up"
    raise Retry(defer=min(2.0**tries, 300.0))
