"""A finished (or running) batch read back for the workflow writers: its jobs in submission order, each
one's result body, the request it was sent with, and what went wrong with it.

Everything is read from the job records and storage, so a writer works the same right after a submit
and when re-attaching to a batch days later. The prompt-template results (producer/templates/run.py) read
batches the same way.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from mmq.contract import JobRecord, JobStatus
from mmq.records import Records
from mmq.storage import BlobNotFound, Storage


async def iter_jobs(records: Records, batch_id: str, chunk: int = 200) -> AsyncIterator[JobRecord]:
    """The batch's jobs in submission order."""
    async for ids in records.iter_batch_job_ids(batch_id, chunk=chunk):
        for job in await records.get_jobs(ids):
            if job is not None:
                yield job


async def result_body(job: JobRecord, storage: Storage) -> Any:
    if job.status is not JobStatus.succeeded or not job.result:
        return None
    try:
        return json.loads(await storage.get(job.result.body_key))
    except BlobNotFound:
        return None


async def job_request(job: JobRecord, storage: Storage) -> dict[str, Any]:
    """The request as stored (small ones inline, large ones in storage); {} if it is gone."""
    if job.request is not None:
        return job.request
    if job.request_key:
        try:
            return json.loads(await storage.get(job.request_key))
        except BlobNotFound:
            return {}
    return {}


def job_error(job: JobRecord) -> str | None:
    if job.status is JobStatus.succeeded:
        return None
    if job.error:
        return job.error.message
    if job.status is JobStatus.cancelled:
        return "cancelled"
    return f"not finished ({job.status.value})"


async def with_bodies(
    records: Records, storage: Storage, batch_id: str, chunk: int = 64
) -> AsyncIterator[tuple[JobRecord, Any]]:
    """(job, result body) in submission order; bodies are read concurrently, a chunk at a time."""
    pending: list[JobRecord] = []

    async def flush() -> list[tuple[JobRecord, Any]]:
        bodies = await asyncio.gather(*(result_body(j, storage) for j in pending))
        out = list(zip(pending, bodies, strict=True))
        pending.clear()
        return out

    async for job in iter_jobs(records, batch_id):
        pending.append(job)
        if len(pending) >= chunk:
            for pair in await flush():
                yield pair
    for pair in await flush():
        yield pair


def caption_text(body: Any) -> str:
    """The assistant text of a chat.completion ("" when there is none)."""
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return ""
    if isinstance(content, list):  # some compatible servers answer with content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""
