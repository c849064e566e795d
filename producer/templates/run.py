"""Running a template: one batch with a job per row, and a finished run's results.

A row becomes one batch line: the rendered request, or a line that fails with the row's own problem (a
missing variable, a bad CSV row) while the other rows run. The jobs may carry the template's own media
blobs and nothing else (Producer's trusted_blob_refs).
"""

from __future__ import annotations

import csv
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from mmq.contract import BatchRecord, JobStatus, MediaPrep
from mmq.records import Records
from mmq.request_models import Kind
from mmq.settings import Settings
from mmq.storage import Storage
from producer.export import export_batch
from producer.submit import BatchLine, Producer
from producer.templates.model import Template, TemplateError
from producer.templates.rows import Row
from producer.workflows.reading import caption_text, iter_jobs, job_error, result_body


def line_for(template: Template, row: Row) -> BatchLine:
    """The batch line of one row: a rendered request, or a line that fails with the row's problem."""
    where = f" in row {row.number}"
    error = row.error
    body = None
    if error is None:
        try:
            body = template.render(row.values)
        except TemplateError as e:
            error = str(e)
    return BatchLine(
        body=body,
        url=template.url,
        custom_id=row.custom_id,
        line_no=row.line_no,
        error=f"{error}{where}" if error else None,
    )


async def _lines(template: Template, rows: AsyncIterable[Row]) -> AsyncIterator[BatchLine]:
    async for row in rows:
        yield line_for(template, row)


async def run_template(
    redis: Redis,
    storage: Storage,
    settings: Settings,
    template: Template,
    rows: AsyncIterable[Row],
    *,
    tenant: str,
    metadata: dict[str, str] | None = None,
    config: dict[str, Any] | str | None = None,
    cache: dict[str, Any] | bool | str | None = None,
    media: MediaPrep | dict[str, Any] | str | None = None,
    allow_local_paths: bool = False,
    base_dir: Path | None = None,
    **schedule: Any,
) -> BatchRecord:
    """One batch: a job per row. `config` / `cache` replace the template's own when given; `schedule`
    (priority, not_before, deadline, webhook_url) goes to Producer.submit_batch as is. Raises LineError
    for a bad option (before any job exists)."""
    producer = Producer(
        redis,
        storage,
        settings,
        allow_local_paths=allow_local_paths,
        base_dir=base_dir,
        trusted_blob_refs=frozenset(template.blobs),  # the template's own media, and nothing else
    )
    return await producer.submit_batch(
        _lines(template, rows),
        tenant=tenant,
        metadata={**(metadata or {}), "template": template.ref},
        config=config if config is not None else template.config,
        cache=cache if cache is not None else template.cache,
        media=media,
        **schedule,
    )


async def write_results(records: Records, storage: Storage, batch_id: str, out: Path) -> tuple[int, int, int]:
    """`out/output.jsonl` (the OpenAI Batch output), every result file under `out/files/`, and
    `out/results.csv` (custom_id, status, text, error): the answer text of chat and transcription jobs.
    Returns (succeeded, not succeeded, files)."""
    files = await export_batch(records, storage, batch_id, out / "output.jsonl", out / "files")
    ok = failed = 0
    with (out / "results.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["custom_id", "status", "text", "error"])
        async for job in iter_jobs(records, batch_id):
            body = await result_body(job, storage)
            text = caption_text(body) if job.kind is Kind.chat else ""
            if job.kind in (Kind.transcription, Kind.translation) and isinstance(body, dict):
                text = str(body.get("text") or "")
            writer.writerow([job.custom_id or job.id, job.status.value, text, job_error(job) or ""])
            ok += job.status is JobStatus.succeeded
            failed += job.status is not JobStatus.succeeded
    return ok, failed, files
