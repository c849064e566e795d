"""The Batch object: an mmq batch record plus its OpenAI-only fields, in OpenAI's shape.

Status mapping (mmq record → OpenAI):
    submission failed (file unreadable, API stopped)     → failed
    submission interrupted (the API died reading the file; sealed by a worker's sweep) → failed
    not sealed (lines still being read and queued)       → validating
    in_progress, sealed                                  → in_progress
    completed, output files not named yet                → finalizing (another request is naming them)
    completed                                            → completed
    cancelling, or cancelled but files not named yet     → cancelling
    cancelled                                            → cancelled
    expired (the completion window passed; lines that had not run carry batch_expired) → expired

Output and error files get their ids when the batch ends: `file-out-<batch id>` (succeeded lines, set
only if there are any) and `file-err-<batch id>` (failed and cancelled lines, set only if there are
any). Their content is streamed from the job records and stored results (views.iter_output).
`request_counts.failed` counts failed and cancelled lines, so completed + failed == total at the end
and the error file has exactly `failed` lines.

A batch made outside /v1 (the CLI, /api, a workflow, a template) has no OpenAI fields of its own; they
are derived from its record: `endpoint` is its first line's kind, `input_file_id` is empty (there is no
uploaded file), `completion_window` and `expires_at` come from its deadline (`none` / null without one),
`model` is its first line's. Its output and error files are named when it ends, as for any batch.

mmq's own fields ride in one extra member, `mmq` (the SDK keeps unknown members: `batch.model_extra`):
the batch's tier, how many lines are in provider batches, realtime (queued or running) and done, lines
paid twice, the provider batches holding its lines (provider, id, state, lines) and what it spent and
saved, in USD.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from mmq.budgets import dollars
from mmq.contract import BatchRecord, BatchStatus
from mmq.packs import Pack, Packs
from mmq.request_models import URL_BY_KIND
from mmq.submissions import INTERRUPTED
from producer.openai_api.context import Ctx, OaiBatch, as_str
from producer.openai_api.file_store import FileMeta


def _status(rec: BatchRecord, oai: OaiBatch) -> str:
    if oai.failed_at is not None:
        return "failed"
    if rec.status is BatchStatus.cancelling:
        return "cancelling"
    if rec.status is BatchStatus.cancelled:
        return "cancelled" if oai.finalized_at is not None else "cancelling"
    if not rec.sealed:
        return "validating"
    if rec.status is BatchStatus.completed:
        return "completed" if oai.finalized_at is not None else "finalizing"
    if rec.status is BatchStatus.expired:
        return "expired" if oai.finalized_at is not None else "finalizing"
    return "in_progress"


async def _made_elsewhere(ctx: Ctx, rec: BatchRecord) -> dict[str, Any]:
    """The OpenAI fields of a batch made outside /v1, derived from its record and its first line."""
    first = await ctx.redis.lindex(ctx.records.batch_jobs_key(rec.id), 0)
    job = (await ctx.records.get_jobs([as_str(first)]))[0] if first is not None else None
    model = (job.request or {}).get("model") if job is not None else None
    created = int(rec.created_at)
    hours = math.ceil((rec.deadline - rec.created_at) / 3600) if rec.deadline else None
    return {
        "endpoint": URL_BY_KIND[job.kind] if job is not None else "/v1/chat/completions",
        "input_file_id": "",
        "completion_window": f"{max(hours, 1)}h" if hours is not None else "none",
        "created_at": created,
        "expires_at": int(rec.deadline) if rec.deadline else None,
        "in_progress_at": created if rec.sealed else None,
        "model": model if isinstance(model, str) else None,
    }


async def batch_object(ctx: Ctx, batch_id: str, who: str) -> dict[str, Any] | None:
    rec = await ctx.records.get_batch(batch_id)
    if rec is None or rec.tenant != who:
        return None
    fields = await ctx.oai_fields(batch_id)
    ended = rec.status in (BatchStatus.completed, BatchStatus.cancelled, BatchStatus.expired)
    if "endpoint" not in fields:  # made outside /v1
        derived = await _made_elsewhere(ctx, rec)
        fields = {**derived, **fields}
        if ended:  # nothing they come from changes any more: kept, later reads skip the derivation
            await ctx.update(batch_id, **derived)
    oai = OaiBatch.model_validate(fields)
    if rec.interrupted and oai.input_file_id and oai.failed_at is None:
        oai = await _interrupted(ctx, rec, oai)
    if ended and oai.finalized_at is None and oai.failed_at is None:
        oai = await _finalize(ctx, rec, oai)
    view = _view(rec, oai)
    view["mmq"] = _mmq(rec, await Packs(ctx.redis, ctx.records.prefix).batch_packs(rec.id))
    return view


def _mmq(rec: BatchRecord, packs: list[Pack]) -> dict[str, Any]:
    c = rec.counts
    return {
        "tier": rec.tier.value,
        "request_counts": {
            "provider_batch": c.provider_batch,
            "realtime": c.queued + c.running,
            "done": c.succeeded + c.failed + c.cancelled,
            "budget": c.budget,
            "paid_twice": c.paid_twice,
        },
        "provider_batches": [
            {"provider": p.provider, "id": p.provider_batch_id, "state": p.state, "lines": p.jobs}
            for p in sorted(packs, key=lambda p: p.created_at)
        ],
        "spent_usd": dollars(rec.spent_micro_usd),
        "saved_usd": dollars(rec.saved_micro_usd),
    }


async def _interrupted(ctx: Ctx, rec: BatchRecord, oai: OaiBatch) -> OaiBatch:
    """A /v1 batch whose API stopped while reading its input file: a worker sealed it after
    MMQ_SUBMIT_STALL_S and cancelled what was queued (mmq/submissions.py); it is `failed`, as when the
    API sees its own submission fail. Written once, on the first read after."""
    error = {
        "code": INTERRUPTED,
        "message": "the API stopped while reading the input file; what was queued was cancelled",
        "param": None,
        "line": None,
    }
    fields = {"failed_at": int(rec.interrupted_at or time.time()), "errors": [*(oai.errors or []), error]}
    await ctx.update(rec.id, **fields)
    return oai.model_copy(update=fields)


async def _finalize(ctx: Ctx, rec: BatchRecord, oai: OaiBatch) -> OaiBatch:
    """Names the output and error files of an ended batch and sums its usage, once. A concurrent
    request that finds the work under way reports `finalizing` (or `cancelling`) meanwhile."""
    lock = f"{ctx.batch_key(rec.id)}:finalizing"
    if not await ctx.redis.set(lock, "1", nx=True, ex=120):
        return oai
    try:
        ended = int(rec.finished_at or time.time())
        expires = ended + oai.output_expires_s if oai.output_expires_s else None
        fields: dict[str, Any] = {"usage": await _usage(ctx, rec.id)}
        for source, count, fid, suffix in (
            ("batch_output", rec.counts.succeeded, f"file-out-{rec.id}", "output"),
            ("batch_error", rec.counts.failed + rec.counts.cancelled, f"file-err-{rec.id}", "error"),
        ):
            if count:
                await ctx.files.save(
                    FileMeta(
                        id=fid,
                        tenant=rec.tenant,
                        filename=f"{rec.id}_{suffix}.jsonl",
                        purpose="batch_output",
                        created_at=ended,
                        expires_at=expires,
                        source=source,  # type: ignore[arg-type]
                        batch_id=rec.id,
                    )
                )
                fields["output_file_id" if suffix == "output" else "error_file_id"] = fid
        fields["finalized_at"] = int(time.time())  # last: readers see the ids and the end together
        await ctx.update(rec.id, **fields)
        return oai.model_copy(update=fields)
    finally:
        await ctx.redis.delete(lock)


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


async def _usage(ctx: Ctx, batch_id: str) -> dict[str, Any]:
    """Tokens of the batch's provider calls (cache hits cost nothing and are left out). Reads three state
    fields of every job (mmq/records.py): a pass done once when the batch ends."""
    t = {"input": 0, "cached": 0, "output": 0, "reasoning": 0, "total": 0}
    async for ids in ctx.records.iter_batch_job_ids(batch_id, chunk=1000):
        pipe = ctx.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(ctx.records.job_key(job_id), "status", "cached", "usage")
        for status, cached, raw_usage in await pipe.execute():
            usage = json.loads(raw_usage) if raw_usage else None
            if status != b"succeeded" or cached == b"1" or not isinstance(usage, dict):
                continue
            inp = _int(usage.get("prompt_tokens", usage.get("input_tokens")))
            out = _int(usage.get("completion_tokens", usage.get("output_tokens")))
            in_details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
            out_details = usage.get("completion_tokens_details") or usage.get("output_tokens_details") or {}
            t["input"] += inp
            t["output"] += out
            if isinstance(in_details, dict):
                t["cached"] += _int(in_details.get("cached_tokens"))
            if isinstance(out_details, dict):
                t["reasoning"] += _int(out_details.get("reasoning_tokens"))
            t["total"] += _int(usage.get("total_tokens")) or inp + out
    return {
        "input_tokens": t["input"],
        "input_tokens_details": {"cached_tokens": t["cached"]},
        "output_tokens": t["output"],
        "output_tokens_details": {"reasoning_tokens": t["reasoning"]},
        "total_tokens": t["total"],
    }


def _view(rec: BatchRecord, oai: OaiBatch) -> dict[str, Any]:
    """The Batch object with every field of OpenAI's spec (null when absent)."""
    status = _status(rec, oai)
    ended = int(rec.finished_at) if rec.finished_at else None
    c = rec.counts
    return {
        "id": rec.id,
        "object": "batch",
        "endpoint": oai.endpoint,
        "model": oai.model,
        "errors": {"object": "list", "data": oai.errors} if oai.errors else None,
        "input_file_id": oai.input_file_id,
        "completion_window": oai.completion_window,
        "status": status,
        "output_file_id": oai.output_file_id,
        "error_file_id": oai.error_file_id,
        "created_at": oai.created_at,
        "in_progress_at": oai.in_progress_at,
        "expires_at": oai.expires_at,
        "finalizing_at": ended if status in ("finalizing", "completed") else None,
        "completed_at": oai.finalized_at if status == "completed" else None,
        "failed_at": oai.failed_at,
        "expired_at": oai.finalized_at if status == "expired" else None,
        "cancelling_at": oai.cancelling_at,
        "cancelled_at": ended if status == "cancelled" else None,
        "request_counts": {"total": c.total, "completed": c.succeeded, "failed": c.failed + c.cancelled},
        "metadata": rec.metadata or None,
        "usage": oai.usage,
    }
