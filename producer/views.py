"""What users see of jobs and batches (API, CLI), and the batch output file in the OpenAI Batch format."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Collection
from typing import Any

from mmq.budgets import dollars
from mmq.contract import TERMINAL, BatchRecord, JobRecord, JobStatus
from mmq.packs import Pack
from mmq.records import Records
from mmq.result_refs import file_url, resolve_file_refs
from mmq.storage import Storage


def job_view(job: JobRecord) -> dict[str, Any]:
    result = None
    if job.result:
        result = {
            "url": f"/api/jobs/{job.id}/result",
            "files": [
                {"url": file_url(job.id, n), "content_type": f.content_type, "bytes": f.bytes}
                for n, f in enumerate(job.result.files)
            ],
        }
    return {
        "id": job.id,
        "object": "mmq.job",
        "batch_id": job.batch_id,
        "custom_id": job.custom_id,
        "kind": job.kind.value,
        "status": job.status.value,
        "cached": job.cached,
        "cached_from": job.cached_from,
        "attempts": [a.model_dump() for a in job.attempts],
        "error": job.error.model_dump() if job.error else None,
        "usage": job.usage,
        "cost": job.cost.model_dump() if job.cost else None,
        "result": result,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }


def provider_batches_view(packs: list[Pack]) -> list[dict[str, Any]]:
    """The batch tier's provider batches holding a batch's jobs (mmq/packs.py), oldest first: where they
    went (provider, target, model), the provider's batch id (None before its create, or for a pack that
    never got one), its state (creating, validating, running, cancelling, harvested, failed), its lines
    (`jobs`: every batch's jobs it holds) and their estimated input `tokens` (what counts against the
    provider's enqueued-token quota), when it was made, when its pending jobs go realtime if it has not
    ended by then (`fallback_at`) or went (`fell_back_at`), why it failed, and what its harvest did."""
    return [
        {
            "pack": p.id,
            "provider": p.provider,
            "target": p.target,
            "model": p.model,
            "id": p.provider_batch_id,
            "state": p.state,
            "jobs": p.jobs,
            "tokens": p.tokens,
            "created_at": p.created_at,
            "fallback_at": p.fallback_due if p.fell_back_at is None else None,
            "fell_back_at": p.fell_back_at,
            "error": p.error,
            "harvest": p.harvest or None,
        }
        for p in sorted(packs, key=lambda p: p.created_at)
    ]


def batch_view(batch: BatchRecord) -> dict[str, Any]:
    return {
        "id": batch.id,
        "object": "mmq.batch",
        "tenant": batch.tenant,
        "status": batch.status.value,
        "sealed": batch.sealed,
        "interrupted": batch.interrupted,  # submission_interrupted: its submission stopped early
        "counts": batch.counts.model_dump(),
        "invalid_lines": batch.invalid_lines,
        "metadata": batch.metadata,
        "created_at": batch.created_at,
        "finished_at": batch.finished_at,
        "priority": batch.priority.value,
        "not_before": batch.not_before,
        "deadline": batch.deadline,
        "webhook_url": batch.webhook_url,
        "cost": {
            "spent_usd": dollars(batch.spent_micro_usd),
            "reserved_usd": dollars(batch.reserved_micro_usd),  # held by calls in flight
            "max_cost_usd": dollars(batch.max_cost_micro_usd),
            "saved_usd": dollars(batch.saved_micro_usd),  # by the batch tier, against realtime prices
            "on_budget": batch.on_budget.value,
        },
        "tier": batch.tier.value,
        "output_url": f"/api/batches/{batch.id}/output.jsonl",
    }


async def result_body(job: JobRecord, storage: Storage) -> Any:
    if not job.result:
        return None
    return resolve_file_refs(json.loads(await storage.get(job.result.body_key)), job.id)


def _error_status(job: JobRecord) -> int:
    if job.error and job.error.provider_status:
        return job.error.provider_status
    return 400 if job.error and job.error.type.startswith("invalid") else 500


async def output_line(job: JobRecord, storage: Storage) -> dict[str, Any]:
    """One line of the output file, shaped like OpenAI's Batch output."""
    line: dict[str, Any] = {
        "id": f"batch_req_{job.id.removeprefix('job_')}",
        "custom_id": job.custom_id,
        "response": None,
        "error": None,
    }
    if job.status is JobStatus.succeeded:
        line["response"] = {"status_code": 200, "request_id": job.id, "body": await result_body(job, storage)}
    elif job.error:
        if job.started_at is not None:  # it reached a worker: an HTTP-level failure, as OpenAI reports it
            line["response"] = {
                "status_code": _error_status(job),
                "request_id": job.id,
                "body": {
                    "error": {"message": job.error.message, "type": job.error.type, "code": job.error.code}
                },
            }
        # a line that never ran (refused at submit) has `response: null`, like OpenAI's non-HTTP failures
        line["error"] = {"code": job.error.type, "message": job.error.message}
    elif job.status is JobStatus.cancelled:
        line["error"] = {"code": "batch_cancelled", "message": "the batch was cancelled before this line ran"}
    return line


async def iter_output(
    records: Records, storage: Storage, batch_id: str, statuses: Collection[JobStatus] | None = None
) -> AsyncIterator[bytes]:
    """The batch's output JSONL, streamed in submission order; jobs still running are left out.
    `statuses` keeps only jobs in those statuses (the OpenAI output file vs. its error file)."""
    wanted = frozenset(statuses) if statuses is not None else TERMINAL
    async for ids in records.iter_batch_job_ids(batch_id, chunk=200):
        jobs = [j for j in await records.get_jobs(ids) if j is not None and j.status in wanted]
        lines = await asyncio.gather(*(output_line(j, storage) for j in jobs))
        yield "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode()
